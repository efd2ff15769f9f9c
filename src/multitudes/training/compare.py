"""`compare`: the measured arms against the isolated reference at equal real bytes.

The loop every regime shares, top to bottom: plan the arms, build those that wait for no other
arm (and resume them), train each in the plan's order (an arm that learns from others is built
once they finished), score it at its milestone, then let the regime read its result out
(training/stream_compare.py, training/limited_compare.py).
"""

from __future__ import annotations

from pathlib import Path

from multitudes.data.corpora import resolve
from multitudes.data.splits import load_splits
from multitudes.evaluation.bpb import paired_gap
from multitudes.runs.distributed import Group
from multitudes.runs.files import RunFiles
from multitudes.runs.results import SCHEMA, ArmResult
from multitudes.training.arms import Arm, ArmContext, Measured, Reference
from multitudes.training.loop import ArmRunner
from multitudes.training.protocol import Protocol, add_curves, yardsticks_of


class Compare(Protocol):
    command = "compare"

    # -- what a regime decides ----------------------------------------------------------------
    def branching(self) -> bool:
        """Whether reference arms finish `wsd` runs as branches off a stable trunk."""
        return False

    def recorded(self, splits: dict, plan: list[Arm], resumed: Path | None) -> dict[str, dict]:
        """The arms read from elsewhere instead of trained (name -> result)."""
        return {}

    def train(self, arm: Arm, runner: ArmRunner) -> None:
        """Train one arm to its end."""
        runner.run_until(arm.total_bytes)

    def finished(self, arm: Arm, result: dict, runner: ArmRunner, out: Path) -> None:
        """Called once an arm is scored at its milestone."""

    def after_arms(self, plan: list[Arm], runners: dict[str, ArmRunner]) -> None:
        """Called once every arm finished, before the results are read out."""

    def efficiency(self, plan: list[Arm], arms: dict, arm: str) -> dict:
        raise NotImplementedError

    # -- the loop ------------------------------------------------------------------------------
    def run(self, out: Path, resume: bool = False, progress: bool = True,
            replay: list[dict] | None = None, group: Group | None = None) -> dict:
        cfg = self.cfg
        files = RunFiles(out, group, progress)
        self.check()
        splits = load_splits(resolve(cfg.data.corpus))
        plan = self.plan()
        ctx = ArmContext(cfg, splits, files, replay, self.branching())
        recorded = self.recorded(splits, plan, out if resume else None)
        runners = {arm.name: arm.build(ctx, {}) for arm in plan
                   if not arm.waits_for() and arm.name not in recorded}
        if resume:
            for runner in runners.values():
                runner.try_resume()
        _rewrite_logs(files, runners)
        arms: dict[str, ArmResult] = {}
        for arm in plan:
            if arm.name in recorded:  # a reference point read from a record, not trained
                files.say(f"{arm.name}: read from the reference record "
                          f"{recorded[arm.name]['from_record']}")
                arms[arm.name] = recorded[arm.name]
                continue
            if arm.name not in runners:  # it learns from arms that have finished by now
                runners[arm.name] = arm.build(ctx, arms)
                if resume:
                    runners[arm.name].try_resume()
                _rewrite_logs(files, runners)  # its births, and no row past its checkpoint twice
            runner = runners[arm.name]
            self.train(arm, runner)
            arms[arm.name] = runner.milestone()
            self.finished(arm, arms[arm.name], runner, out)
        self.after_arms(plan, runners)
        files.close()
        for runner in runners.values():
            if "curve" not in arms[runner.name]:  # a recorded reference point has it already
                add_curves(arms[runner.name], runner)
            if runner.finished:
                arms[runner.name]["finished"] = [p.to_json() for p in runner.finished]
        first = next(iter(runners.values()))
        results = {"schema": SCHEMA, "command": "compare", "preset": cfg.name,
                   "regime": cfg.regime, "corpus": cfg.data.corpus,
                   "real_bytes": cfg.train.real_bytes, **self.read_out(plan, arms),
                   **equal_bytes_gap(plan, arms, len(first.scoring.held_out["valid"])),
                   "yardsticks": yardsticks_of(first, cfg.train.real_bytes),
                   "arms": {a.name: {"arm": a.describe(), **arms[a.name]} for a in plan}}
        files.write_results(results)
        files.write_timings(resume)
        return results

    def read_out(self, plan: list[Arm], arms: dict) -> dict:
        """The headline arm's data efficiency, and the evolution ablation's beside it."""
        measured = [arm.name for arm in plan if isinstance(arm, Measured)]
        efficiency = self.efficiency(plan, arms, measured[0])
        for ablation in measured[1:]:
            efficiency["evolution_data_efficiency"] = self.efficiency(plan, arms, ablation)
        return efficiency


def _rewrite_logs(files: RunFiles, runners: dict[str, ArmRunner]) -> None:
    files.rewrite_logs([r for x in runners.values() for r in x.history],
                       [e for x in runners.values() for e in x.events])


def equal_bytes_gap(plan: list[Arm], arms: dict, valid_bytes: int) -> dict:
    """The social arm's lead over the isolated arm at the same N real bytes, on valid beyond
    the dev slice (no decision has read it), with a standard error over paired blocks: for the
    consensus, and for each arm's member the dev slice ranks first. It measures what the
    multiplier, read on the small dev slice, may leave unresolved."""
    measured = next(a.name for a in plan if isinstance(a, Measured))
    reference = next(a.name for a in plan if isinstance(a, Reference))
    social, alone = arms[measured].get("valid_blocks"), arms[reference].get("valid_blocks")
    if not social or not alone:
        return {}
    return {"equal_bytes_gap": {
        "split": "valid beyond the dev slice", "bytes": valid_bytes,
        "consensus": paired_gap(alone["consensus"], social["consensus"]),
        "best_by_dev": paired_gap(alone["best_by_dev"], social["best_by_dev"])}}
