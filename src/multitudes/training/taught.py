"""Taught arms of the data-limited regime: arms that listen to a finished arm's frozen members.

A distilled arm is one member (the genome of the isolated member the dev slice ranks first)
taught by the social arm (`distilled`) or by the isolated ensemble (`distilled-ensemble`); a
generation is K members bred from the generation before and taught by it (chain distillation
grown into a population). The teachers are read back from their saved member checkpoints (their
kept best weights) and mixed with the weights fit on the dev slice: the elders every member also
listens to (population/elders.py). The kinds of these arms are in training/arms.py.
"""

from __future__ import annotations

import random
from dataclasses import replace

from multitudes.config.schema import RunConfig
from multitudes.evaluation.target import load_member
from multitudes.evolution import generations
from multitudes.population.elders import Elders, forward_flops
from multitudes.runs.device import resolve_device
from multitudes.runs.files import RunFiles


def genome_of(files: RunFiles, member: dict):
    """The genome of one finished member (its entry in an arm's results)."""
    return load_member(files.out / member["checkpoint"])[0]


def offspring_of(cfg: RunConfig, files: RunFiles, parent: dict, generation: int) -> list:
    """Generation g's genomes, bred from the finished generation g - 1 (`parent`'s results)."""
    genomes = {m["id"]: load_member(files.out / m["checkpoint"])[0] for m in parent["members"]}
    return offspring(cfg, genomes, {m["id"]: m["best_dev_bpb"] for m in parent["members"]},
                     generation)


def elders_of(cfg: RunConfig, files: RunFiles, teachers: list[dict]) -> Elders:
    """Finished arms' members, frozen at their kept best weights, each arm's mixed with the
    weights fit on its dev slice and the arms weighted equally, on the device the run trains
    on."""
    device = resolve_device(cfg.train.device)
    members = [(m, t) for t in teachers for m in t["members"]]
    saved = [load_member(files.out / m["checkpoint"]) for m, _ in members]
    share = 1 / len(teachers)
    return Elders([model.to(device) for _, model, _ in saved],
                  [t["mixture_weights"][m["id"]] * share if len(teachers) > 1
                   else t["mixture_weights"][m["id"]] for m, t in members],
                  forward_flops_per_byte=forward_flops([genome for genome, _, _ in saved]))


def student_config(cfg: RunConfig, members: list) -> RunConfig:
    """The run's config for a taught arm of `members`: each listens with `student_alpha` when
    one is given (how hard a student listens is a choice of its own), and never evolves within
    the arm, so a one-member student under a config whose social arm evolves is not refused
    as "evolution needs 2"."""
    if cfg.compare.student_alpha:
        members = [g.replace(alpha=cfg.compare.student_alpha) for g in members]
    return replace(cfg, members=members, evolution=replace(cfg.evolution, every=0))


def offspring(cfg: RunConfig, genomes: dict, fitness: dict, generation: int) -> list:
    """The genomes of generation g, bred from generation g - 1 (its genomes and best dev bpb by
    member id), one child per parent, each by evolution's one breeding step
    (generations.breed); each child has a seed of its own. A pure function of the config, the
    parents and g, so a resume breeds the same generation."""
    evo, rng = cfg.evolution, random.Random(f"{cfg.train.seed}:generation:{generation}")
    budget = generations.default_budget(evo, cfg.members)
    return [generations.breed(fitness, genomes, rng, evo, budget)[0] for _ in genomes]
