"""Protocols: `train` (one arm) and `compare` (isolated vs social at equal real bytes).

Compare, stream regime: both arms start from the same genomes and seeds and read the same
batches. Each is scored on the full valid and test splits after N real bytes. The isolated arm
then reads on until its best dev bpb falls to the social arm's at N, or to M x N at most; its
dev-slice curve gives the data-efficiency multiplier: the real bytes it needs to reach the social
arm's best dev bpb at N, divided by N ("> M" when never reached).
No point of the isolated curve may be flattered or handicapped by its schedule: either every arm
runs without length-dependent decay (`constant`), so each point of the curve is what a run of
that length would reach, or (`wsd`) every arm's result is a finished run cooled down at its end:
the social arm's at N, and the isolated arm's at N, then at N x (1 + j (M - 1) / P) as cooldowns
branched off its stable trunk (Hägele et al. 2024), read until one reaches the social arm.

Compare, data-limited regime: the training split is cut to U unique bytes read in epochs; every
arm keeps each member's best valid weights (early stopping). The isolated arm is also trained on
2U and 4U unique bytes for the same real bytes, and the multiplier is the unique data it needs
to match the social arm's best valid bpb, interpolated in log(U), divided by U ("> 4" when not
reached).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from multitudes.evolution import generations
from multitudes.evaluation import yardsticks
from multitudes.config.schema import CompareConfig, EvolutionConfig, RunConfig, SocialConfig
from multitudes.data.corpora import resolve
from multitudes.data.splits import check_trainable, load_splits
from multitudes.errors import UserError
from multitudes.evaluation.bpb import paired_gap
from multitudes.evaluation.curves import crossing
from multitudes.evaluation.placement import place, reference_arm, reference_point
from multitudes.runs.directory import drop_shorter
from multitudes.runs.files import RunFiles
from multitudes.runs.results import SCHEMA
from multitudes.population.elders import Elders
from multitudes.runs.distributed import Group
from multitudes.training import taught
from multitudes.training.reference_record import ReferenceRecord, corpus_digest, point_config
from multitudes.training.loop import ArmRunner, isolated


# an arm whose gain is measured, the curve that measures it, or a student taught by another arm
ROLES = ("measured", "reference", "student")


@dataclass(frozen=True)
class ArmPlan:
    """One arm of a run: what it is called, how its members talk and evolve, what it reads, and
    its role in the comparison. Every arm starts from the same genomes and seeds."""
    name: str
    social: SocialConfig
    total_bytes: int  # the length its schedule plans for
    role: str = "measured"  # "measured": its gain is reported; "reference": the isolated curve
    unique_bytes: int = 0  # data-limited: the training split cut to this many bytes (0: all)
    evolution: EvolutionConfig | None = None
    teacher: str | None = None  # a student's teacher: the arm whose dev-fit mixture it hears

    def __post_init__(self) -> None:
        assert self.role in ROLES, self.role
        assert (self.role == "student") == (self.teacher is not None), self


def plan_train(cfg: RunConfig) -> ArmPlan:
    """`train`: one arm, social when its members talk to each other."""
    talks = cfg.social.channel != "none" or cfg.social.language_every > 0
    name = "social" if talks and len(cfg.members) > 1 else "isolated"
    return ArmPlan(name, cfg.social, cfg.train.real_bytes, unique_bytes=cfg.data.unique_bytes,
                   evolution=cfg.evolution)


def plan_compare(cfg: RunConfig) -> list[ArmPlan]:
    """`compare`: the social arm (and social+evolution in the ablation), then the isolated
    reference: read on to M x N (stream), or trained on U, 2U and 4U unique bytes (data-limited)."""
    N, alone = cfg.train.real_bytes, isolated(cfg.social)
    if cfg.compare.evolution_ablation:
        measured = [ArmPlan("social", cfg.social, N), ArmPlan("social+evolution", cfg.social, N,
                                                              evolution=cfg.evolution)]
    else:
        measured = [ArmPlan("social", cfg.social, N, evolution=cfg.evolution)]
    if cfg.regime == "stream":
        return measured + [ArmPlan("isolated", alone, int(N * cfg.compare.multiplier),
                                   role="reference")]
    U = cfg.data.unique_bytes
    students = [ArmPlan(name, cfg.social, N, role="student", unique_bytes=U, teacher=teacher)
                for name, teacher in (("distilled", "social"), ("distilled-ensemble",
                                                                "isolated"))
                ] if cfg.compare.distill else []
    students += [ArmPlan(f"generation-{g}", cfg.social, N, role="student", unique_bytes=U,
                         teacher="social" if g == 2 else f"generation-{g - 1}")
                 for g in range(2, cfg.compare.generations + 1)]
    return [replace(p, unique_bytes=U) for p in measured] + [
        ArmPlan(reference_arm(k), alone, reference_bytes(cfg, k),
                role="reference", unique_bytes=k * U) for k in cfg.compare.unique_multiples
    ] + students


def reference_bytes(cfg: RunConfig, k: int) -> int:
    """The real bytes the reference point on k x U reads: N on U itself (the isolated arm reads
    what the social arm reads); beyond U its own epoch budget when `compare.reference_epochs`
    gives one, else N, or `reference_min_epochs` passes over k x U where that is more."""
    N, U, own = cfg.train.real_bytes, cfg.data.unique_bytes, cfg.compare.own_epochs(k)
    if own:
        return round(k * U * own)
    return max(N, int(k * U * cfg.compare.reference_min_epochs))


def planned_bytes(cfg: RunConfig, command: str) -> list[int]:
    """The real bytes each arm of a run is planned to read (a stream reference: as far as it
    may read on), for the warning before a very long run."""
    if command == "train":
        return [cfg.train.real_bytes]
    return [p.total_bytes for p in plan_compare(cfg)]


def largest_multiple(cfg: RunConfig, command: str) -> int:
    """The most unique bytes a run reads, as a multiple of U: the reference's largest k x U."""
    if command == "compare" and cfg.regime == "data-limited":
        return max(cfg.compare.unique_multiples)
    return 1


def check_runnable(cfg: RunConfig, command: str) -> None:
    """A bad corpus, or one too small for the config (its batch, context, dev slice, unique
    bytes), is one line before anything is written: for `train`, `compare` and every cell of a
    study alike."""
    check_trainable(load_splits(resolve(cfg.data.corpus)), cfg.train.batch_size, cfg.context,
                    cfg.train.dev_bytes, cfg.data.corpus, cfg.data.unique_bytes,
                    largest_multiple(cfg, command))


def runner_for(plan: ArmPlan, cfg: RunConfig, splits: dict, files: RunFiles,
               replay: list[dict] | None, branching: bool = False,
               elders: Elders | None = None) -> ArmRunner:
    return ArmRunner(cfg, splits, files, name=plan.name, social=plan.social,
                     total_bytes=plan.total_bytes, unique_bytes=plan.unique_bytes,
                     evolution=plan.evolution, replay=replay, branching=branching,
                     elders=elders)


def run(command: str, cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True,
        replay: list[dict] | None = None, group: Group | None = None) -> dict:
    """`train` or `compare` (the one dispatch of the command line, replay and the study)."""
    protocol = {"train": run_train, "compare": run_compare}[command]
    return protocol(cfg, out, resume, progress, replay, group)


def numbers(results: dict) -> dict:
    """What a replay or a resume must reproduce: every member's valid and test bpb."""
    return {arm: [(m["id"], m["valid_bpb"], m["test_bpb"]) for m in res["members"]]
            for arm, res in results["arms"].items()}


def run_train(cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True,
              replay: list[dict] | None = None, group: Group | None = None) -> dict:
    files = RunFiles(out, group, progress)
    splits = load_splits(resolve(cfg.data.corpus))
    plan = plan_train(cfg)
    runner = runner_for(plan, cfg, splits, files, replay)
    if resume:
        runner.try_resume()
    files.rewrite_logs(runner.history, runner.events)
    runner.run_until(cfg.train.real_bytes)
    files.close()
    result = runner.milestone()
    _add_curves(result, runner)
    results = {"schema": SCHEMA, "command": "train", "preset": cfg.name, "regime": cfg.regime,
               "corpus": cfg.data.corpus, "real_bytes": result["real_bytes"],
               "yardsticks": _yardsticks(runner, result["real_bytes"]),
               "arms": {plan.name: result}}
    files.write_results(results)
    files.for_writer(lambda: drop_shorter(out))  # a longer run finished: no going back now
    files.write_timings(resume)
    return results


def _yardsticks(runner: ArmRunner, real_bytes: int) -> dict:
    """The classical compressors on the dev slice, valid (beyond it) and test, given the bytes
    this arm's stream dealt (every arm of a comparison reads the same)."""
    targets = {"dev": runner.scoring.dev, **runner.scoring.held_out}
    with runner.files.clock.phase("run", "yardsticks"):
        return runner.files.for_writer(
            lambda: yardsticks.for_splits(runner.stream.dealt_bytes(real_bytes), targets))


def _add_curves(result: dict, runner: ArmRunner) -> None:
    """An arm's dev curve and, when it evolved, its newborns' against the founders'."""
    result["curve"] = [p.to_json() for p in runner.curve()]
    culture = generations.cultural_transmission(runner.history, runner.events, runner.name)
    if culture:
        result["culture"] = culture


def run_compare(cfg: RunConfig, out: Path, resume: bool = False, progress: bool = True,
                replay: list[dict] | None = None, group: Group | None = None) -> dict:
    files = RunFiles(out, group, progress)
    if cfg.train.schedule == "cosine" and cfg.regime == "stream":
        raise UserError("compare needs train.schedule = \"constant\" or \"wsd\" in the stream "
                        "regime: the isolated curve must not be read off an unfinished cosine "
                        "schedule")
    splits = load_splits(resolve(cfg.data.corpus))
    N = cfg.train.real_bytes
    plans = plan_compare(cfg)
    # stream + wsd: the isolated reference's finished runs branch off its stable trunk
    branching = cfg.regime == "stream" and cfg.train.schedule == "wsd"
    students = [p for p in plans if p.role == "student"]  # built once their teachers finish
    plans = [p for p in plans if p.role != "student"]
    record, point_configs, recorded = _reference_record(cfg, splits, plans, out if resume
                                                        else None)
    trained = [p for p in plans if p.name not in recorded]
    runners = [runner_for(p, cfg, splits, files, replay, branching and p.role == "reference")
               for p in trained]
    measured = [r for r, p in zip(runners, trained) if p.role == "measured"]
    if resume:
        for runner in runners:
            runner.try_resume()
    files.rewrite_logs([r for runner in runners for r in runner.history],
                       [e for runner in runners for e in runner.events])
    arms, runner_of = {}, {r.name: r for r in runners}
    for plan in plans:
        if plan.name in recorded:  # a reference point read from the record, not trained
            files.say(f"{plan.name}: read from the reference record {record.path}")
            arms[plan.name] = from_record(recorded[plan.name], record.path)
            continue
        runner = runner_of[plan.name]
        if runner.branching:  # scored at the end of its cooldown, before it returns to the trunk
            runner.finish_branch(N, at_end=ArmRunner.milestone)
        else:  # N, or a data-limited reference's own budget
            runner.run_until(N if cfg.regime == "stream" else plan.total_bytes)
        arms[runner.name] = runner.milestone()
        if plan.name in point_configs:  # recorded as it finishes: a later stop loses none
            _add_curves(arms[plan.name], runner)
            files.for_writer(lambda: record.add(point_configs[plan.name], arms[plan.name],
                                                str(runner.pop.device), out))
    for plan in students:
        runner = taught.runner(plan, cfg, splits, files, arms, replay, runner_for)
        if resume:
            runner.try_resume()
        runners.append(runner)
        plans.append(plan)
        files.rewrite_logs([r for x in runners for r in x.history],  # its births, and no row
                           [e for x in runners for e in x.events])  # past its checkpoint twice
        runner.run_until(plan.total_bytes)
        arms[runner.name] = runner.milestone()
    if cfg.regime == "stream":  # read on only as far as the multipliers need
        social_bpb = min(r.history[-1]["best_dev_bpb"] for r in measured)
        reference = next(r for r, p in zip(runners, plans) if p.role == "reference")
        _read_on(reference, N, cfg.compare, social_bpb)
    files.close()
    for runner in runners:
        if "curve" not in arms[runner.name]:  # a recorded reference point has it already
            _add_curves(arms[runner.name], runner)
        if runner.finished:
            arms[runner.name]["finished"] = [p.to_json() for p in runner.finished]

    references = [p for p in plans if p.role == "reference"]

    def efficiency_of(arm: str) -> dict:
        return (_stream_efficiency(arms, N, cfg.compare.multiplier, arm)
                if cfg.regime == "stream" else
                _unique_efficiency(arms, cfg.data.unique_bytes, references, arm))
    efficiency = efficiency_of("social")
    if "social+evolution" in arms:
        efficiency["evolution_data_efficiency"] = efficiency_of("social+evolution")
    results = {"schema": SCHEMA, "command": "compare", "preset": cfg.name, "regime": cfg.regime,
               "corpus": cfg.data.corpus, "real_bytes": N, **efficiency,
               **_equal_bytes_gap(arms, len(runners[0].scoring.held_out["valid"])),
               "yardsticks": _yardsticks(runners[0], N), "arms": arms}
    files.write_results(results)
    files.write_timings(resume)
    return results


def _reference_record(cfg: RunConfig, splits: dict, plans: list[ArmPlan],
                      resumed: Path | None = None
                      ) -> tuple[ReferenceRecord | None, dict[str, dict], dict[str, dict]]:
    """Data-limited with `compare.reference_record`: the record, the config of each reference
    point beyond U (arm name -> config) and those of them it holds (arm name -> result). A
    resumed run (`resumed`: its directory) reads its own points back from its milestones, as an
    uninterrupted run has them, not from the record it added them to."""
    if cfg.regime != "data-limited" or not cfg.compare.reference_record:
        return None, {}, {}
    record = ReferenceRecord.open(cfg.compare.reference_record)
    corpus = corpus_digest(splits)
    configs = {p.name: point_config(cfg, corpus, p.unique_bytes // cfg.data.unique_bytes)
               for p in plans if p.role == "reference" and p.unique_bytes > cfg.data.unique_bytes}
    own = {name for name, c in configs.items()
           if resumed is not None and record.trained_by(c) == os.path.abspath(resumed)}
    found = {name: record.find(c) for name, c in configs.items() if name not in own}
    return record, configs, {name: res for name, res in found.items() if res is not None}


def from_record(result: dict, path: Path) -> dict:
    """A reference point read from the record, as its arm in results.json: its members' numbers
    without their checkpoints, which are in the run that trained it, not in this one."""
    members = [{k: v for k, v in m.items() if k != "checkpoint"} for m in result["members"]]
    return {**result, "members": members, "from_record": str(path)}


def _equal_bytes_gap(arms: dict, valid_bytes: int) -> dict:
    """The social arm's lead over the isolated arm at the same N real bytes, on valid beyond
    the dev slice (no decision has read it), with a standard error over paired blocks: for the
    consensus, and for each arm's member the dev slice ranks first. It measures what the
    multiplier, read on the small dev slice, may leave unresolved."""
    social, alone = arms["social"].get("valid_blocks"), arms["isolated"].get("valid_blocks")
    if not social or not alone:
        return {}
    return {"equal_bytes_gap": {
        "split": "valid beyond the dev slice", "bytes": valid_bytes,
        "consensus": paired_gap(alone["consensus"], social["consensus"]),
        "best_by_dev": paired_gap(alone["best_by_dev"], social["best_by_dev"])}}


def _read_on(runner: ArmRunner, N: int, compare: CompareConfig, target: float) -> None:
    """The isolated arm reads on until its best member reaches `target`, or to M x N: along its
    curve (`constant`), or through finished runs branched off its trunk (`wsd`)."""
    M = compare.multiplier
    if not runner.branching:
        runner.run_until(int(N * M), stop_below=target)
        return
    for j in range(1, compare.read_on_points + 1):
        if runner.finished[-1].best_dev_bpb <= target:
            return
        runner.finish_branch(int(N * (1 + j * (M - 1) / compare.read_on_points)))


def _stream_efficiency(arms: dict, N: int, M: float, arm: str = "social") -> dict:
    social_bpb = next(r for r in arms[arm]["curve"] if r["real_bytes"] >= N)["best_dev_bpb"]
    finished = "finished" in arms["isolated"]
    if finished:  # `wsd`: only finished runs count
        curve = [(p["real_bytes"], p["best_dev_bpb"]) for p in arms["isolated"]["finished"]]
    else:
        curve = [(r["real_bytes"], r["best_dev_bpb"]) for r in arms["isolated"]["curve"]]
    needed = crossing(curve, social_bpb)
    return {"data_efficiency": needed / N if needed else None,
            "data_efficiency_reached": needed is not None, "data_efficiency_bound": M,
            # a finished isolated run at N already as good: the social arm bought nothing
            "data_efficiency_at_most": finished and curve[0][1] <= social_bpb,
            # finished runs that get worse with more bytes on the dev slice: the first
            # crossing is not a measurement of data efficiency, whatever number it gives
            "data_efficiency_unresolved": finished and any(
                b[1] > a[1] for a, b in zip(curve, curve[1:])),
            "data_efficiency_dev_gap": curve[0][1] - social_bpb if finished else None,
            "data_efficiency_points": [[x / N, y] for x, y in curve] if finished else None,
            "data_efficiency_basis": "real bytes for the isolated arm's best member to reach the "
                                     "social arm's best dev bpb at equal bytes, / real bytes"}


def _unique_efficiency(arms: dict, U: int, references: list[ArmPlan], arm: str = "social"
                       ) -> dict:
    """The data-limited read-out: every arm placed on the isolated recipe's curve over k x U
    unique bytes (evaluation/placement.py), and the headline, the social arm's best member."""
    points = [reference_point(p.unique_bytes // U, p.unique_bytes, arms[p.name])
              for p in references]
    limited = place(points, arms, [p.name for p in references])
    head, bound = limited["placed"][arm]["best"], points[-1]["k"]
    return {"data_efficiency": head["vs_single"] if head["vs_single_flag"] != ">" else None,
            "data_efficiency_reached": head["vs_single_flag"] != ">",
            "data_efficiency_bound": bound,
            "data_efficiency_at_most": head["vs_single_flag"] == "<=",
            "data_efficiency_basis": "unique training bytes the isolated recipe's best member "
                                     "needs to reach the social arm's best member's test bpb "
                                     "(piecewise linear in log U between measured points), / U",
            "data_limited": limited}
