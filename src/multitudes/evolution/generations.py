"""Generations: who dies, who is born, from which parents; and what the newborns learned.

A generation follows a dev evaluation, so every member's fitness (dev bpb on the fixed dev
slice) is fresh. The worst fraction dies, never the best; each death makes room for a newborn
whose parents are chosen by tournament among the survivors, and whose genome comes from a
crossover of two parents or a mutation of one (evolution/operators.py). A plan is a list of deaths and a
list of births (dicts, as they are written to lineage.jsonl), so a finished run's plans can be
read back from its lineage and replayed exactly.
"""

from __future__ import annotations

import math
import random

from multitudes.evolution import operators
from multitudes.config.schema import EvolutionConfig
from multitudes.config.genome import Genome, member_id
from multitudes.evaluation.curves import crossing


def plan(members, cfg: EvolutionConfig, rng: random.Random, budget: int,
         next_number: int, ages: dict[str, int] | None = None) -> tuple[list[str], list[dict]]:
    """Decide one generation: the ids that die and the births that replace them, in order.

    `ages`: steps each member has lived; one younger than `cfg.min_age` is not judged yet (as
    in population-based training's "ready" condition): late bloomers get time to bloom. When
    nobody is old enough, nothing happens.
    """
    fitness = {m.id: m.fitness for m in members}
    ranked = sorted(fitness, key=lambda i: (fitness[i], i))  # best first
    ages = ages or {}
    mortal = [i for i in ranked[1:] if ages.get(i, cfg.min_age) >= cfg.min_age]  # never the best
    n_die = min(len(mortal), max(1, math.floor(cfg.replace_fraction * len(ranked))))
    deaths = mortal[len(mortal) - n_die:][::-1] if n_die else []  # worst first
    survivors = {i: fitness[i] for i in ranked if i not in deaths}
    genomes = {m.id: m.genome for m in members}
    births = []
    for k in range(n_die):
        genome, parents, ops = breed(survivors, genomes, rng, cfg, budget)
        births.append({"member": member_id(next_number + k, genome.family), "parents": parents,
                       "genome": genome.to_dict(), "ops": ops})
    return deaths, births


def breed(fitness: dict[str, float], genomes: dict, rng: random.Random, cfg: EvolutionConfig,
          budget: int) -> tuple[Genome, list[str], list[str]]:
    """One child of the parents in `fitness` (id -> dev bpb): the first parent wins a
    tournament, then a crossover with a second (probability `cfg.crossover`, when there is a
    second) or a mutation, repaired into `budget` parameters. Its genome, parents and
    operations. The one breeding step of births in a run and of a compare's generations."""
    first = operators.tournament(fitness, rng, cfg.tournament)
    if len(fitness) > 1 and rng.random() < cfg.crossover:
        others = {i: f for i, f in fitness.items() if i != first}
        second = operators.tournament(others, rng, cfg.tournament)
        genome, ops = operators.crossover(genomes[first], genomes[second], rng, budget)
        return genome, [first, second], ops
    genome, ops = operators.mutate(genomes[first], rng, budget, cfg.family_switch,
                                   tuple(cfg.families))
    return genome, [first], ops


def default_budget(cfg: EvolutionConfig | None, founders: list[Genome]) -> int:
    """The parameters a newborn may have: `evolution.budget`, or twice the largest founder's."""
    return cfg.budget if cfg is not None and cfg.budget else \
        2 * max(g.n_params for g in founders)


def from_lineage(rows: list[dict], arm: str, step: int) -> tuple[list[str], list[dict]]:
    """The deaths and births a recorded run had in `arm` at `step` (for replay)."""
    here = [r for r in rows if r.get("arm") == arm and r["step"] == step]
    deaths = [r["member"] for r in here if r["event"] == "death"]
    births = [{k: r[k] for k in ("member", "parents", "genome", "ops")}
              for r in here if r["event"] == "birth" and r["parents"]]
    return deaths, births


def cultural_transmission(history: list[dict], events: list[dict], arm: str) -> dict | None:
    """Newborns' dev bpb against age in real bytes, beside the founders' at the same age.

    For each newborn that lived through at least one evaluation, the stated age A is its last
    age; the target is the founders' mean dev bpb at age A (the founders' age is the run's
    bytes); the speed-up is A divided by the age at which the newborn first reached that target.
    A ratio above 1 says newborns learn faster than the founders did, as culture would predict.
    """
    births = [e for e in events if e.get("arm") == arm and e["event"] == "birth"]
    founders = [e["member"] for e in births if not e["parents"]]
    newborns = [e for e in births if e["parents"]]
    if not founders or not newborns:
        return None
    founder_curve = []
    for row in history:
        alive = [row["members"][f]["dev_bpb"] for f in founders if f in row["members"]]
        if alive:
            founder_curve.append((row["real_bytes"], sum(alive) / len(alive)))
    out = []
    for birth in newborns:
        mine = [(0, birth["fitness"])] + [
            (row["real_bytes"] - birth["real_bytes"], row["members"][birth["member"]]["dev_bpb"])
            for row in history if birth["member"] in row["members"]
            and row["real_bytes"] > birth["real_bytes"]]
        if len(mine) < 2:  # died before its first evaluation
            continue
        age = mine[-1][0]
        target = _at(founder_curve, age)
        if target is None:
            continue
        needed = crossing(mine, target)
        out.append({"member": birth["member"], "family": birth["genome"]["family"],
                    "born_at_bytes": birth["real_bytes"], "age_bytes": age,
                    "founders_bpb_at_age": target, "curve": mine,
                    "bytes_to_founders_bpb": needed,
                    "speedup": age / needed if needed else None})
    speedups = sorted(n["speedup"] for n in out if n["speedup"] is not None)
    return {"newborns": out,
            "median_speedup": speedups[len(speedups) // 2] if speedups else None,
            "founder_curve": founder_curve,
            "basis": "age (real bytes since birth) a newborn needs to reach the founders' mean "
                     "dev bpb at the newborn's last age, as a ratio: last age / bytes needed"}


def _at(curve: list[tuple[int, float]], x: float) -> float | None:
    """The curve's value at x, linearly interpolated (None outside it)."""
    for (x0, y0), (x1, y1) in zip(curve, curve[1:]):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1
    if curve and curve[0][0] == x:
        return curve[0][1]
    return None
