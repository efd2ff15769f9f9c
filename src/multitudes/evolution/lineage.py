"""Reading a run's lineage.jsonl: births, deaths and resets, and the family tree as text."""

from __future__ import annotations

import json
from pathlib import Path

from multitudes.errors import UserError


def read(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "lineage.jsonl"
    if not path.is_file():
        raise UserError(f"{run_dir} has no lineage.jsonl (not a run directory?)")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise UserError(f"{path}:{n} is not JSON") from None
    return rows


def _summary(genome: dict) -> str:
    g = genome
    shape = f"d{g['d_model']} L{g['n_layer']}" + (f"x{g['n_loop']}" if g["n_loop"] > 1 else "")
    return f"{g['family']} {shape} lr {g['lr']:.3g} alpha {g['alpha']:g}"


def tree(rows: list[dict]) -> str:
    """Each arm's family tree: founders at the roots, a newborn under its first parent."""
    lines = []
    for arm in dict.fromkeys(r["arm"] for r in rows):
        mine = [r for r in rows if r["arm"] == arm]
        births = {r["member"]: r for r in mine if r["event"] == "birth"}
        deaths = {r["member"]: r for r in mine if r["event"] == "death"}
        resets = [r for r in mine if r["event"] == "reset"]
        if not births:
            continue
        children: dict[str, list[str]] = {}
        for b in births.values():
            if b["parents"]:
                children.setdefault(b["parents"][0], []).append(b["member"])
        lines.append(f"{arm}: {len(births)} births, {len(deaths)} deaths, {len(resets)} resets")

        def describe(member: str) -> str:
            b, d = births[member], deaths.get(member)
            born = ("founder" if not b["parents"] else
                    f"born at step {b['step']} of {' x '.join(b['parents'])}"
                    + (f" ({', '.join(b['ops'])})" if b["ops"] else ""))
            end = (f"died at step {d['step']} ({d['fitness']:.3f} bpb)" if d else "alive")
            return f"{member}  {_summary(b['genome'])}  {born}; {end}"

        def walk(member: str, prefix: str, last: bool, root: bool) -> None:
            branch = "" if root else ("`-- " if last else "|-- ")
            lines.append(f"  {prefix}{branch}{describe(member)}")
            kids = children.get(member, [])
            inner = prefix + ("" if root else ("    " if last else "|   "))
            for i, kid in enumerate(kids):
                walk(kid, inner, i == len(kids) - 1, False)

        for root in (m for m, b in births.items() if not b["parents"]):
            walk(root, "", True, True)
    for r in rows:
        if r["event"] == "reset":
            lines.append(f"{r['arm']}: {r['member']} reset at step {r['step']} ({r['reason']})")
    return "\n".join(lines) if lines else "no births or deaths recorded"
