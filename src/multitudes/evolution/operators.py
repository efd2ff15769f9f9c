"""Genetic operators on genomes: mutation, crossover and repair into a parameter budget.

Pure functions: each takes an explicit `random.Random` and returns the child genome and a
readable list of what changed ("d_model 128 -> 192", "family lstm -> gru", "lr * 1.25"), so the
same generator state always gives the same child and every birth can be explained in the
lineage. Numeric traits move one rung along a ladder; a family switch is rare.
"""

from __future__ import annotations

import random

from multitudes.errors import UserError
from multitudes.config.genome import BLOCKS, SWITCHABLE, Genome

LADDERS = {
    "d_model": (32, 48, 64, 96, 128, 160, 192, 256, 320, 384, 512, 640, 768, 1024),
    "n_layer": (1, 2, 3, 4, 6, 8, 12),
    "n_loop": (2, 3, 4, 6),
    "alpha": (0.0, 0.25, 0.5, 1.0, 2.0),
    "tau": (1.0, 1.5, 2.0, 3.0),
}
LR_FACTORS = (0.8, 1.25)
ARCHITECTURE = ("family", "d_model", "n_layer", "n_head", "d_ff", "n_loop")  # inherited together
HABITS = ("lr", "warmup", "weight_decay", "alpha", "tau", "dropout")  # inherited one by one


def _step(ladder: tuple, value, up: bool):
    """The next rung above or below `value` (its nearest rung if it is off the ladder)."""
    nearest = min(range(len(ladder)), key=lambda i: abs(ladder[i] - value))
    return ladder[max(0, min(len(ladder) - 1, nearest + (1 if up else -1)))]


def _set(g: Genome, trait: str, value) -> Genome:
    """Change one trait; a new width keeps d_ff's ratio to d_model and heads that divide it."""
    if trait != "d_model" or g.family not in BLOCKS:
        return g.replace(**{trait: value})
    d_ff = max(1, round(g.d_ff * value / g.d_model))
    heads = next(h for h in (g.n_head, 8, 4, 2, 1) if h <= value and value % h == 0)
    return g.replace(d_model=value, d_ff=d_ff, n_head=heads)


def traits_of(family: str) -> list[str]:
    numeric = ["d_model", "n_layer", "lr", "alpha", "tau"]
    return numeric + ["n_loop"] if family == "looped" else numeric


def switch_family(g: Genome, family: str) -> Genome:
    """The same architecture in another family: two loops for a looped one (one for the rest),
    heads that divide the width."""
    g = g.replace(family=family, n_loop=2 if family == "looped" else 1)
    return _set(g, "d_model", g.d_model)


def mutate(g: Genome, rng: random.Random, budget: int, family_switch: float = 0.05,
           families: tuple[str, ...] = SWITCHABLE) -> tuple[Genome, list[str]]:
    """One or two traits stepped along their ladders; rarely, a switch of family to another
    of `families`."""
    changes = []
    if rng.random() < family_switch:
        family = rng.choice([f for f in families if f != g.family])
        changes.append(f"family {g.family} -> {family}")
        g = switch_family(g, family)
    for trait in rng.sample(traits_of(g.family), rng.choice((1, 2))):
        old = getattr(g, trait)
        if trait == "lr":
            factor = rng.choice(LR_FACTORS)
            g = g.replace(lr=old * factor)
            changes.append(f"lr * {factor}")
            continue
        new = _step(LADDERS[trait], old, rng.random() < 0.5)
        if new != old:
            g = _set(g, trait, new)
            changes.append(f"{trait} {old} -> {new}")
    g = g.replace(seed=rng.randrange(2**31))
    g, repairs = repair(g, budget)
    return g, changes + repairs


def crossover(a: Genome, b: Genome, rng: random.Random,
              budget: int) -> tuple[Genome, list[str]]:
    """Uniform crossover: the architecture comes whole from one parent, each habit from either."""
    arch_from, other = (a, b) if rng.random() < 0.5 else (b, a)
    names = {id(a): "first", id(b): "second"}
    changes = [f"architecture ({arch_from.family}) from the {names[id(arch_from)]} parent"]
    child = {k: getattr(arch_from, k) for k in ARCHITECTURE}
    for habit in HABITS:
        parent = a if rng.random() < 0.5 else b
        child[habit] = getattr(parent, habit)
        if getattr(a, habit) != getattr(b, habit):
            changes.append(f"{habit} from the {names[id(parent)]} parent")
    g = Genome(**child, context=a.context, seed=rng.randrange(2**31))
    g, repairs = repair(g, budget)
    return g, changes + repairs


def repair(g: Genome, budget: int) -> tuple[Genome, list[str]]:
    """Shrink a genome into the parameter budget: width first, then depth (a looped genome's
    loops are left as they are: they add compute, not parameters)."""
    changes = []
    while g.n_params > budget:
        for trait, floor in (("d_model", LADDERS["d_model"][0]), ("n_layer", 1)):
            value = getattr(g, trait)
            if value > floor:
                new = _step(LADDERS[trait] if trait == "d_model" else LADDERS["n_layer"],
                            value, up=False)
                g = _set(g, trait, new)
                changes.append(f"{trait} {value} -> {new} (budget)")
                break
        else:
            raise UserError(f"evolution.budget={budget:,} parameters is below the smallest "
                            f"{g.family} ({g.n_params:,})")
    return g, changes


def check_reachable(founders: list[Genome], families: tuple[str, ...], family_switch: float,
                    budget: int) -> None:
    """Refuse, before any training, a budget below the smallest genome a birth can reach: each
    founder's architecture (a crossover takes one whole) in its own family and, when families
    switch, in each family a switch may choose, shrunk as `repair` shrinks it."""
    for g in founders:
        reachable = [g.family, *(families if family_switch > 0 else ())]
        for family in dict.fromkeys(reachable):
            repair(g if family == g.family else switch_family(g, family), budget)


def tournament(fitness: dict[str, float], rng: random.Random, size: int = 2) -> str:
    """The fittest (lowest dev bpb) of `size` members drawn at random."""
    entrants = rng.sample(sorted(fitness), min(size, len(fitness)))
    return min(entrants, key=lambda m: (fitness[m], m))
