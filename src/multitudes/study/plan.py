"""A scaling study's plan: the grid of cells a study file (or the command line) asks for.

A study file (`studies/NAME.toml`) holds the grid's axes (members K, sizes, mixes, channels,
seeds), what each size and mix means, and a base run config ([base], the keys of a preset without
its members). Each cell is an ordinary run config:

- K >= 2: a `compare` run (social vs isolated at equal real bytes) of K members of the mix's
  families, cycled (hetero: gru, gpt, lstm, looped, gru, ...), at the size's shapes;
- K = 1: a `train` run of the mix's first family alone (no peer, no social arm: multiplier 1),
  named by that family and shared by every mix it heads;
- with `compute_matched`, for each K >= 2 a `train` run of one member of the mix's first family
  widened to about K times the population's mean parameters: the compute-matched peer.

Seeds: the study seed s sets train.seed = s and member i's seed = 100 s + i, so seeds differ in
both initialisation and nothing else of the recipe.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from multitudes.config.schema import RunConfig, check_run_name
from multitudes.config.files import apply_overrides, from_dict, read_toml
from multitudes.errors import UserError
from multitudes.config.genome import BLOCKS, Genome

STUDY_DIR = Path(__file__).parent / "studies"
AXES = ("members", "sizes", "mixes", "channels")
KEYS = {"name", "description", "seeds", "compute_matched", "inference", "base", "size",
        "mix", "channel", *AXES}


@dataclass(frozen=True)
class Cell:
    name: str  # also its run directory under the study's cells/
    command: str  # "compare" or "train"
    kind: str  # "population", "single" (K = 1) or "peer" (the compute-matched member)
    mix: str
    size: str
    K: int
    channel: str
    seed: int
    cfg: RunConfig


def list_studies() -> dict[str, str]:
    return {p.stem: read_toml(p, "study file").get("description", "")
            for p in sorted(STUDY_DIR.glob("*.toml"))}


def load(preset: str | None, study_file: str | None, overrides: list[str] = (),
         axes: dict | None = None) -> dict:
    """The study's document: the file, `--set` overrides (dotted, e.g. base.train.real_bytes=
    8192, size.S.gru.d_model=64), then the axes given on the command line. Checked here."""
    if (preset is None) == (study_file is None):
        raise UserError("give exactly one of --preset NAME or --config STUDY.toml")
    if preset is not None:
        path = STUDY_DIR / f"{preset}.toml"
        if not preset.replace("-", "").isalnum() or not path.is_file():
            raise UserError(f"unknown study preset {preset!r} (known: "
                            f"{', '.join(list_studies())})")
    else:
        path = Path(study_file)
    doc = apply_overrides(read_toml(path, "study file"), list(overrides))
    for axis, values in (axes or {}).items():
        if values is not None:
            doc[axis] = values
    check(doc)
    _absolute_record(doc)
    cells(doc)  # every cell's config checked, before anything is written
    return doc


def _absolute_record(doc: dict) -> None:
    """base.compare.reference_record named relative to where the study is started, resolved
    once here (study.json keeps it absolute: a resume from another folder, and every cell,
    read and add to the same file), links refused, and readable as a record (or absent), as
    `compare` checks its own before it writes anything."""
    from multitudes.training.reference_record import ReferenceRecord, absolute

    compare = doc.get("base", {}).get("compare")
    if isinstance(compare, dict) and isinstance(compare.get("reference_record"), str) \
            and compare["reference_record"]:
        path = absolute(compare["reference_record"])
        ReferenceRecord.open(str(path))
        compare["reference_record"] = str(path)


def check_cells(plan: list[Cell], fetch: bool = True) -> list[str]:
    """Every cell's config runnable on its corpus (one line before any cell trains, as `train`
    checks its own): each distinct data shape once. `fetch=False` (a dry run) downloads
    nothing: the corpora not at hand are left unchecked, and returned."""
    from multitudes.data.corpora import at_hand
    from multitudes.training.protocols import check_runnable

    seen, unchecked = set(), []
    for cell in plan:
        c = cell.cfg
        if not fetch and not at_hand(c.data.corpus):
            unchecked += [c.data.corpus] if c.data.corpus not in unchecked else []
            continue
        shape = (c.data.corpus, c.train.batch_size, c.context, c.train.dev_bytes,
                 c.data.unique_bytes, cell.command)
        if shape not in seen:
            seen.add(shape)
            try:
                check_runnable(c, cell.command)
            except UserError as e:
                raise UserError(f"study cell {cell.name}: {e}") from None
    return unchecked


def _positive_ints(doc: dict, key: str) -> list[int]:
    values = doc.get(key)
    if not isinstance(values, list) or not values or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise UserError(f"study {key} must be a non-empty list of positive integers, got "
                        f"{values!r}")
    return values


# Bounds on a plan, checked before it is built: a typo such as --members 2,1000000000000 or
# --seeds 100000 would otherwise build members or cells until memory or patience runs out.
MAX_MEMBERS = 1024
MAX_CELLS = 10_000


def check(doc: dict) -> None:
    """Every key known and of its type, every axis value defined once, the plan bounded; one
    line for the first problem. Each cell's own config is checked when the plan is built."""
    if not isinstance(doc, dict):
        raise UserError("a study is a table of keys (name, members, sizes, ...)")
    unknown = set(doc) - KEYS
    if unknown:
        raise UserError(f"unknown study key {sorted(unknown)[0]} (known: {', '.join(sorted(KEYS))})")
    for key in ("name", "description"):
        if not isinstance(doc.get(key, ""), str):
            raise UserError(f"study {key} must be a string, got {doc[key]!r}")
    check_run_name(doc.get("name", "study"), "study name", "runs/scale-NAME")
    for key in ("compute_matched", "inference"):
        if not isinstance(doc.get(key, False), bool):
            raise UserError(f"study {key} must be true or false, got {doc[key]!r}")
    if not isinstance(doc.get("base", {}), dict):
        raise UserError("study base must be a table ([base]: a run config without members)")
    members = _positive_ints(doc, "members")
    if max(members) > MAX_MEMBERS:
        raise UserError(f"study members: K = {max(members):,} is more than {MAX_MEMBERS:,}")
    seeds = doc.get("seeds")
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise UserError(f"study seeds must be a positive integer, got {seeds!r}")
    for axis, table in (("members", None), ("sizes", "size"), ("mixes", "mix"),
                        ("channels", "channel")):
        values = doc.get(axis)
        if not isinstance(values, list) or not values:
            raise UserError(f"study {axis} must be a non-empty list, got {values!r}")
        if len(set(map(str, values))) < len(values):  # a cell twice: a false error bar
            raise UserError(f"study {axis} {values!r}: a value is given twice")
        if table is None:
            continue
        defined = doc.get(table, {})
        kinds = list if table == "mix" else dict
        if not isinstance(defined, dict) or not all(isinstance(t, kinds)
                                                    for t in defined.values()):
            raise UserError(f"study {table} must be a table of "
                            f"{'lists' if kinds is list else 'tables'} ([{table}.NAME])")
        for v in values:
            if not isinstance(v, str) or v not in defined:
                raise UserError(f"study {axis}: {v!r} is not defined (known: "
                                f"{', '.join(defined) or 'none'}; define [{table}.{v}])")
    for mix in doc["mixes"]:
        families = doc["mix"][mix]
        if not families or not all(isinstance(f, str) for f in families):
            raise UserError(f"mix.{mix} must be a non-empty list of families")
        for size in doc["sizes"]:
            for family in families:
                member = doc["size"][size].get(family)
                if not isinstance(member, dict):
                    raise UserError(f"size.{size} has no {family} member (mix {mix} needs one)")
                if member.get("family", family) != family:
                    raise UserError(f"size.{size}.{family}.family={member['family']!r}: a size's "
                                    f"table names its family; drop the key")
    planned = len(doc["sizes"]) * seeds * len(doc["mixes"]) * len(members) * (
        len(doc["channels"]) + 1)
    if planned > MAX_CELLS:
        raise UserError(f"the study plans about {planned:,} cells, more than {MAX_CELLS:,}: "
                        f"fewer seeds, sizes, mixes, members or channels")


def member_seed(seed: int, index: int) -> int:
    """Member `index`'s seed under study seed `seed` (train.seed is `seed` itself)."""
    return 100 * seed + index


def _member(doc: dict, size: str, family: str, index: int, seed: int) -> dict:
    return {**copy.deepcopy(doc["size"][size][family]), "family": family,
            "seed": member_seed(seed, index)}


def _peer(doc: dict, size: str, family: str, K: int, seed: int, mean_params: float) -> dict:
    """One member of `family` widened until it holds about K x `mean_params` parameters."""
    base = _member(doc, size, family, 0, seed)
    step = base.get("n_head", 1) * 8
    d, best = base["d_model"], None
    for width in range(step, 16 * base["d_model"] + step, step):
        g = {**base, "d_model": width}
        if family in BLOCKS:  # an MLP's width grows with the model's
            g["d_ff"] = base.get("d_ff", 4 * base["d_model"]) * width // d
        params = Genome.from_dict(g, "peer").n_params
        if best is None or abs(params - K * mean_params) < abs(best[0] - K * mean_params):
            best = (params, g)
        if params > K * mean_params:  # parameters grow with the width: no closer one after
            break
    return best[1]


def _config(doc: dict, members: list[dict], channel: str, seed: int, name: str) -> RunConfig:
    data = apply_overrides(doc.get("base", {}), [])
    for section in ("social", "train"):
        if not isinstance(data.get(section, {}), dict):
            raise UserError(f"study base.{section} must be a table ([base.{section}])")
    data["social"] = {**data.get("social", {}), **doc["channel"][channel]}
    data["train"] = {**data.get("train", {}), "seed": seed}
    data.update(name=name, members=members,
                description=f"scaling study {doc.get('name', '')}: cell {name}")
    try:
        return from_dict(data)
    except UserError as e:
        raise UserError(f"study cell {name}: {e}") from None


def cells(doc: dict) -> list[Cell]:
    """Every cell of the grid, sizes outermost (smallest first: a study stopped early has the
    small members over every seed, with error bars), then seed, mix, K, channel; K = 1 cells
    once per (family, size, seed), peers once per (mix, size, K, seed)."""
    out, seen = [], set()
    for size in doc["sizes"]:
        for seed in range(1, doc["seeds"] + 1):
            for mix in doc["mixes"]:
                families = doc["mix"][mix]
                for K in doc["members"]:
                    members = [_member(doc, size, families[i % len(families)], i, seed)
                               for i in range(K)]
                    for channel in (doc["channels"] if K > 1 else [doc["channels"][0]]):
                        kind = "population" if K > 1 else "single"
                        # K = 1 is the mix's first family alone: shared by the mixes it heads
                        name = (f"{mix}-{size}-K{K}-{channel}-s{seed}" if K > 1
                                else f"{families[0]}-{size}-K1-s{seed}")
                        if name not in seen:
                            seen.add(name)
                            out.append(Cell(name, "compare" if K > 1 else "train", kind, mix,
                                            size, K, channel if K > 1 else "none", seed,
                                            _config(doc, members, channel, seed, name)))
                    if K > 1 and doc.get("compute_matched", False):
                        mean = sum(Genome.from_dict(m, "m").n_params for m in members) / K
                        name = f"{mix}-{size}-K{K}-peer-s{seed}"
                        peer = _peer(doc, size, families[0], K, seed, mean)
                        out.append(Cell(name, "train", "peer", mix, size, K, "none", seed,
                                        _config(doc, [peer], doc["channels"][0], seed, name)))
    return out

