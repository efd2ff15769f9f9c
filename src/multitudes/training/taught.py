"""Taught arms of the data-limited regime: arms that listen to a finished arm's frozen members.

A distilled arm is one member (the genome of the isolated member the dev slice ranks first)
taught by the social arm (`distilled`) or by the isolated ensemble (`distilled-ensemble`); a
generation is K members bred from the generation before and taught by it (chain distillation
grown into a population). The teachers are read back from their saved member checkpoints (their
kept best weights) and mixed with the weights fit on the dev slice: the elders every member also
listens to (population/elders.py).
"""

from __future__ import annotations

import random
from dataclasses import replace

from multitudes.config.schema import RunConfig
from multitudes.evaluation.target import load_member
from multitudes.evolution import generations
from multitudes.population.elders import Elders
from multitudes.runs.distributed import resolve_device
from multitudes.runs.files import RunFiles


def runner(plan, cfg: RunConfig, splits: dict, files: RunFiles, arms: dict,
           replay: list[dict] | None, runner_for):
    """The ArmRunner of a taught arm `plan`, once its teacher (and the isolated arm) finished."""
    teacher = arms[plan.teacher]
    saved = [load_member(files.out / m["checkpoint"]) for m in teacher["members"]]
    if plan.name.startswith("generation-"):
        genomes = {m["id"]: genome for m, (genome, _, _) in zip(teacher["members"], saved)}
        members = offspring(cfg, genomes, {m["id"]: m["best_dev_bpb"] for m in
                                           teacher["members"]},
                            int(plan.name.rsplit("-", 1)[1]))
    else:
        ranked = min(arms["isolated"]["members"], key=lambda m: m["best_dev_bpb"])
        members = [load_member(files.out / ranked["checkpoint"])[0]]
    if cfg.compare.student_alpha:  # how hard a student listens is a choice of its own
        members = [g.replace(alpha=cfg.compare.student_alpha) for g in members]
    device = resolve_device(cfg.train.device)
    elders = Elders([model.to(device) for _, model, _ in saved],
                    [teacher["mixture_weights"][m["id"]] for m in teacher["members"]])
    # a taught arm never evolves within itself (its plan has no evolution): a one-member
    # student under a config whose social arm evolves is not refused as "evolution needs 2"
    quiet = replace(cfg.evolution, every=0)
    taught = runner_for(plan, replace(cfg, members=members, evolution=quiet), splits, files,
                        replay, elders=elders)
    taught.pop.elder_weight = cfg.compare.elder_weight
    return taught


def offspring(cfg: RunConfig, genomes: dict, fitness: dict, generation: int) -> list:
    """The genomes of generation g, bred from generation g - 1 (its genomes and best dev bpb by
    member id), one child per parent, each by evolution's one breeding step
    (generations.breed); each child has a seed of its own. A pure function of the config, the
    parents and g, so a resume breeds the same generation."""
    evo, rng = cfg.evolution, random.Random(f"{cfg.train.seed}:generation:{generation}")
    budget = generations.default_budget(evo, cfg.members)
    return [generations.breed(fitness, genomes, rng, evo, budget)[0] for _ in genomes]
