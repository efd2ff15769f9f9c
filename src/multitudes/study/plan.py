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

from multitudes.config.schema import RunConfig
from multitudes.config.files import apply_overrides, from_dict, read_toml
from multitudes.errors import UserError
from multitudes.config.genome import Genome

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
    return doc


def _positive_ints(doc: dict, key: str) -> list[int]:
    values = doc.get(key)
    if not isinstance(values, list) or not values or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise UserError(f"study {key} must be a non-empty list of positive integers, got "
                        f"{values!r}")
    return values


def check(doc: dict) -> None:
    """Every key known, every axis value defined; one line for the first problem."""
    unknown = set(doc) - KEYS
    if unknown:
        raise UserError(f"unknown study key {sorted(unknown)[0]} (known: {', '.join(sorted(KEYS))})")
    _positive_ints(doc, "members")
    if not isinstance(doc.get("seeds"), int) or doc["seeds"] < 1:
        raise UserError(f"study seeds must be a positive integer, got {doc.get('seeds')!r}")
    for axis, table in (("sizes", "size"), ("mixes", "mix"), ("channels", "channel")):
        values = doc.get(axis)
        if not isinstance(values, list) or not values:
            raise UserError(f"study {axis} must be a non-empty list, got {values!r}")
        defined = doc.get(table, {})
        if not isinstance(defined, dict) or not all(isinstance(t, (dict, list))
                                                    for t in defined.values()):
            raise UserError(f"study {table} must be a table of tables ([{table}.NAME])")
        for v in values:
            if v not in defined:
                raise UserError(f"study {axis}: {v!r} is not defined (known: "
                                f"{', '.join(defined) or 'none'}; define [{table}.{v}])")
    for mix in doc["mixes"]:
        families = doc["mix"][mix]
        if not isinstance(families, list) or not families:
            raise UserError(f"mix.{mix} must be a non-empty list of families")
        for size in doc["sizes"]:
            for family in families:
                if not isinstance(doc["size"][size].get(family), dict):
                    raise UserError(f"size.{size} has no {family} member (mix {mix} needs one)")


def _member(doc: dict, size: str, family: str, index: int, seed: int) -> dict:
    return {**copy.deepcopy(doc["size"][size][family]), "family": family,
            "seed": 100 * seed + index}


def _peer(doc: dict, size: str, family: str, K: int, seed: int, mean_params: float) -> dict:
    """One member of `family` widened until it holds about K x `mean_params` parameters."""
    base = _member(doc, size, family, 0, seed)
    step = base.get("n_head", 1) * 8
    d, best = base["d_model"], None
    for width in range(step, 16 * base["d_model"] + step, step):
        g = {**base, "d_model": width}
        if family in ("gpt", "looped"):
            g["d_ff"] = base.get("d_ff", 4 * base["d_model"]) * width // d
        params = Genome.from_dict(g, "peer").n_params
        if best is None or abs(params - K * mean_params) < abs(best[0] - K * mean_params):
            best = (params, g)
        if params > K * mean_params:  # parameters grow with the width: no closer one after
            break
    return best[1]


def _config(doc: dict, members: list[dict], channel: str, seed: int, name: str) -> RunConfig:
    data = apply_overrides(doc.get("base", {}), [])
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

