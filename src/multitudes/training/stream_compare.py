"""`compare` in the stream regime: isolated vs social at equal real bytes, each byte read once.

Both arms start from the same genomes and seeds and read the same batches. Each is scored on the
full valid and test splits after N real bytes. The isolated arm then reads on until its best dev
bpb falls to the social arm's at N, or to M x N at most; its dev-slice curve gives the
data-efficiency multiplier: the real bytes it needs to reach the social arm's best dev bpb at N,
divided by N ("> M" when never reached).
No point of the isolated curve may be flattered or handicapped by its schedule: either every arm
runs without length-dependent decay (`constant`), so each point of the curve is what a run of
that length would reach, or (`wsd`) every arm's result is a finished run cooled down at its end:
the social arm's at N, and the isolated arm's at N, then at N x (1 + j (M - 1) / P) as cooldowns
branched off its stable trunk (Hägele et al. 2024), read until one reaches the social arm.
"""

from __future__ import annotations

from multitudes.errors import UserError
from multitudes.evaluation.curves import crossing
from multitudes.training.arms import Arm, Measured, Reference
from multitudes.training.compare import Compare
from multitudes.training.loop import ArmRunner, isolated
from multitudes.training.protocol import register


@register("compare", "stream")
class StreamCompare(Compare):

    def plan(self) -> list[Arm]:
        """The social arm (and social+evolution in the ablation), then the isolated reference,
        planned to read on to M x N."""
        cfg, N = self.cfg, self.cfg.train.real_bytes
        return measured_arms(cfg) + [Reference("isolated", isolated(cfg.social),
                                               int(N * cfg.compare.multiplier))]

    def check(self) -> None:
        if self.cfg.train.schedule == "cosine":
            raise UserError("compare needs train.schedule = \"constant\" or \"wsd\" in the "
                            "stream regime: the isolated curve must not be read off an "
                            "unfinished cosine schedule")

    def branching(self) -> bool:
        # under wsd the isolated reference's finished runs branch off its stable trunk
        return self.cfg.train.schedule == "wsd"

    def train(self, arm: Arm, runner: ArmRunner) -> None:
        N = self.cfg.train.real_bytes
        if runner.branching:  # scored at the end of its cooldown, before it returns to the trunk
            runner.finish_branch(N, at_end=ArmRunner.milestone)
        else:
            runner.run_until(N)

    def after_arms(self, plan: list[Arm], runners: dict[str, ArmRunner]) -> None:
        """The isolated arm reads on only as far as the multiplier needs: until its best member
        reaches the social arm's best dev bpb, or to M x N: along its curve (`constant`), or
        through finished runs branched off its trunk (`wsd`)."""
        target = min(runners[a.name].history[-1]["best_dev_bpb"] for a in plan
                     if isinstance(a, Measured))
        runner = runners[next(a.name for a in plan if isinstance(a, Reference))]
        N, M = self.cfg.train.real_bytes, self.cfg.compare.multiplier
        if not runner.branching:
            runner.run_until(int(N * M), stop_below=target)
            return
        points = self.cfg.compare.read_on_points
        for j in range(1, points + 1):
            if runner.finished[-1].best_dev_bpb <= target:
                return
            runner.finish_branch(int(N * (1 + j * (M - 1) / points)))

    def efficiency(self, plan: list[Arm], arms: dict, arm: str) -> dict:
        N, M = self.cfg.train.real_bytes, self.cfg.compare.multiplier
        reference = arms[next(a.name for a in plan if isinstance(a, Reference))]
        social_bpb = next(r for r in arms[arm]["curve"] if r["real_bytes"] >= N)["best_dev_bpb"]
        finished = "finished" in reference
        if finished:  # `wsd`: only finished runs count
            curve = [(p["real_bytes"], p["best_dev_bpb"]) for p in reference["finished"]]
        else:
            curve = [(r["real_bytes"], r["best_dev_bpb"]) for r in reference["curve"]]
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
                "data_efficiency_basis": "real bytes for the isolated arm's best member to reach "
                                         "the social arm's best dev bpb at equal bytes, / real "
                                         "bytes"}


def measured_arms(cfg) -> list[Arm]:
    """The arms whose gain is reported: social (evolving, when evolution is on), or social and
    social+evolution side by side in the ablation."""
    N = cfg.train.real_bytes
    if cfg.compare.evolution_ablation:
        return [Measured("social", cfg.social, N),
                Measured("social+evolution", cfg.social, N, evolution=cfg.evolution)]
    return [Measured("social", cfg.social, N, evolution=cfg.evolution)]
