"""`train`: one arm, social when its members talk to each other."""

from __future__ import annotations

from pathlib import Path

from multitudes.data.corpora import resolve
from multitudes.data.splits import load_splits
from multitudes.runs.directory import drop_shorter
from multitudes.runs.distributed import Group
from multitudes.runs.files import RunFiles
from multitudes.runs.results import SCHEMA
from multitudes.training.arms import Arm, ArmContext, Measured
from multitudes.training.protocol import Protocol, add_curves, register, yardsticks_of


@register("train")
class Train(Protocol):
    command = "train"

    def plan(self) -> list[Arm]:
        cfg = self.cfg
        name = "social" if cfg.social.listens and len(cfg.members) > 1 else "isolated"
        return [Measured(name, cfg.social, cfg.train.real_bytes, unique_bytes=cfg.data.unique_bytes,
                    evolution=cfg.evolution)]

    def run(self, out: Path, resume: bool = False, progress: bool = True,
            replay: list[dict] | None = None, group: Group | None = None) -> dict:
        cfg = self.cfg
        files = RunFiles(out, group, progress)
        splits = load_splits(resolve(cfg.data.corpus))
        arm = self.plan()[0]
        runner = arm.build(ArmContext(cfg, splits, files, replay), {})
        if resume:
            runner.try_resume()
        files.rewrite_logs(runner.history, runner.events)
        runner.run_until(cfg.train.real_bytes)
        files.close()
        result = runner.milestone()
        add_curves(result, runner)
        results = {"schema": SCHEMA, "command": "train", "preset": cfg.name,
                   "regime": cfg.regime, "corpus": cfg.data.corpus,
                   "real_bytes": result["real_bytes"],
                   "yardsticks": yardsticks_of(runner, result["real_bytes"]),
                   "arms": {arm.name: {"arm": arm.describe(), **result}}}
        files.write_results(results)
        files.for_writer(lambda: drop_shorter(out))  # a longer run finished: no going back now
        files.write_timings(resume)
        return results
