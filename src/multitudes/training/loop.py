"""The run loop of one arm: a population reading real bytes, evaluated on a schedule.

Phases of a run, in order: build the population and its batch stream (or restore them from the
latest checkpoint), then step; every `eval_every` steps score each member on the dev slice
(curves, fitness, early stopping), log it, and when a generation is due let the worst die and
newborns take their places; every `checkpoint_every` steps save the whole state atomically; at a
milestone, score every member on valid beyond the dev slice and the full test split and save its
weights for `multitudes eval`.

Each concern lives in its own file, behind one call here: the population's step
(population/population.py), scoring (training/scoring.py), births (evolution/births.py),
checkpoints (training/state.py), and the run's files (runs/files.py, which alone decides which
process writes). Under torchrun every rank
runs this loop in step; only population.py and those files know about ranks.
"""

from __future__ import annotations

from dataclasses import replace

from tqdm import tqdm

from multitudes.training import state
from multitudes.evolution.births import Births
from multitudes.config.schema import EvolutionConfig, RunConfig, SocialConfig
from multitudes.errors import UserError
from multitudes.data.splits import make_stream, unique_sample, unique_with_held_out
from multitudes.runs.device import resolve_device
from multitudes.population.elders import Elders
from multitudes.population.population import Population
from multitudes.runs.files import RunFiles
from multitudes.runs.results import ArmResult, DevPoint, FinishedRun
from multitudes.training.scoring import LN2, Scoring

class ArmRunner:
    """One arm (`isolated`, `social`, ...) of a run, steppable to successive byte targets."""

    def __init__(self, cfg: RunConfig, splits: dict, files: RunFiles, *, name: str,
                 social: SocialConfig, total_bytes: int, unique_bytes: int = 0,
                 evolution: EvolutionConfig | None = None, replay: list[dict] | None = None,
                 branching: bool = False, elders: Elders | None = None):
        """`total_bytes`: the length its schedule plans for; `unique_bytes`: cut the training
        split to this many bytes, read in epochs, and keep each member's best dev weights;
        `evolution`: run generations with these settings (None or every=0: no evolution);
        `replay`: take the births and deaths from these lineage rows instead of deciding;
        `branching`: under `wsd`, train a stable trunk and finish runs of several lengths as
        cooldowns branched off it (`finish_branch`), instead of one run cooled at the end;
        `elders`: frozen teachers every member also listens to (a distilled student)."""
        self.cfg, self.name, self.files = cfg, name, files
        device = resolve_device(cfg.train.device)
        held = None
        if unique_bytes and cfg.compare.mixture_fit == "unique":  # no data beyond U
            train, held = unique_with_held_out(splits["train"], unique_bytes,
                                               cfg.compare.mixture_fraction)
            if len(held) < 2:
                raise UserError(f"compare.mixture_fraction={cfg.compare.mixture_fraction} holds "
                                f"{len(held)} of the {unique_bytes:,} unique bytes out: too few "
                                f"to fit a mixture on")
        else:
            train = unique_sample(splits["train"], unique_bytes) if unique_bytes \
                else splits["train"]
        self.scoring = Scoring(cfg, splits, device, keep_best=unique_bytes > 0,
                               progress=files.progress, mixture_slice=held)
        self.stream = make_stream(train, cfg.train.batch_size, cfg.context, cfg.train.seed,
                                  cfg.train.sampling)
        self.pop = Population.found(cfg.members, social, cfg.train,
                                    self.stream.steps_for(total_bytes), device, files.group)
        self.pop.elders = elders
        self.births = Births(name, evolution, cfg.members, replay)
        self.checkpoints = state.ArmCheckpoints(files.out, name, files.group)
        wsd = cfg.train.schedule == "wsd"
        self.branching = branching and wsd
        if wsd and not self.branching:  # one run, cooled down at its end
            self.pop.horizon = self.pop.total_steps
        self.in_branch = False  # a cooldown branch is not checkpointed: a resume redoes it
        # the step of the checkpoint on disk: an arm's end writes its state once, not twice
        # (at enwik8 size a checkpoint is about a gigabyte)
        self.saved_at: int | None = None
        self.finished: list[FinishedRun] = []  # `wsd`: the finished runs off the trunk
        self.history: list[dict] = []  # the dev evaluations, as in metrics.jsonl
        self.events: list[dict] = self.births.founders(self.pop)  # births, deaths, resets

    # -- the loop ------------------------------------------------------------------------------
    def run_until(self, real_bytes: int, stop_below: float | None = None) -> None:
        """Train to `real_bytes`, or until the best dev bpb falls to `stop_below`."""
        target = self.stream.steps_for(real_bytes)
        if stop_below is not None and self.history and \
                self.history[-1]["best_dev_bpb"] <= stop_below:
            return  # reached before a kill: a resumed run does not read on
        eval_every, save_every = self.cfg.train.eval_every, self.cfg.train.checkpoint_every
        bar = tqdm(total=target, initial=self.pop.steps, desc=f"{self.name:>9}", unit="step",
                   disable=None if self.files.progress else True, dynamic_ncols=True)
        while self.pop.steps < target:
            with self.files.clock.phase(self.name, "training steps"):
                stats = self.pop.step(self.stream.next(), self.stream.continues)
            bar.update(1)
            if self.pop.events_ready:
                self._record_events(bar)
            bar.set_postfix(loss=f"{min(stats.data_loss) / LN2:.3f}bpb")
            if self.pop.steps % eval_every == 0 or self.pop.steps == target:
                row = self.evaluate_dev(bar)
                if stop_below is not None and row["best_dev_bpb"] <= stop_below:
                    break
                if self.births.due(self.pop.steps, target):
                    self.generation(bar)
            if save_every and self.pop.steps % save_every == 0:
                self.save(bar)
        bar.close()
        if self.saved_at != self.pop.steps:  # the loop's last step may have just written it
            self.save(bar)

    def evaluate_dev(self, bar=None) -> dict:
        """Score every member on the dev slice; the row goes to the history and the logs."""
        row = {"arm": self.name, "step": self.pop.steps, "real_bytes": self.pop.real_bytes,
               **({"branch": self.pop.horizon} if self.in_branch else {}),
               "generated_bytes": self.pop.generated_bytes,
               "epochs": round(self.stream.epochs_done, 4), "members": {}}
        with self.files.clock.phase(self.name, "dev scoring"):
            self.history.append(self.scoring.dev_row(self.pop, row))
        self._record_events(bar)
        self.files.append_metrics(row)
        if bar is not None:
            bar.set_postfix(dev=f"{row['best_dev_bpb']:.3f}bpb")
        return row

    def generation(self, bar=None) -> None:
        """The worst die and newborns take their places (decided, or replayed from a lineage)."""
        for rows, line in self.births.generation(self.pop, self.stream.bytes_per_batch,
                                                 self.scoring.dev_bpb):
            self._log(rows)
            self.files.say(line, bar)

    def milestone(self) -> ArmResult:
        """Valid and test scores of every member (read back when scored before a kill)."""
        def score() -> dict:
            with self.files.clock.phase(self.name, "held-out scoring"):
                return self.scoring.milestone(self.pop, self.name, self.name, self.files,
                                              self.stream.epochs_done)
        return self.files.milestone(self.name, score)

    # -- finished runs under `wsd` -------------------------------------------------------------
    def cooldown_start(self, real_bytes: int) -> int:
        """The step a `wsd` run of `real_bytes` starts its cooldown at."""
        horizon = self.stream.steps_for(real_bytes)
        return horizon - max(1, round(self.cfg.train.cooldown * horizon))

    def finish_branch(self, real_bytes: int, at_end=None) -> FinishedRun:
        """A finished `wsd` run of `real_bytes`, branched off the stable trunk.

        The trunk trains to the cooldown's start and is checkpointed there; the cooldown runs
        to `real_bytes`, is evaluated (and `at_end(self)` is called, e.g. to score a
        milestone), then the arm returns to the trunk checkpoint. The dev rows of the branch
        stay in the history; the finished point is kept in `self.finished`.
        """
        done = next((p for p in self.finished if p.target == real_bytes), None)
        if done is not None:  # finished before a kill
            return done
        self.run_until(self.cooldown_start(real_bytes) * self.stream.bytes_per_batch)
        self.pop.horizon, self.in_branch = self.stream.steps_for(real_bytes), True
        self.run_until(real_bytes)
        point = FinishedRun.of_row(real_bytes, self.history[-1], self.pop.steps)
        if at_end is not None:
            at_end(self)
        history = self.history
        self.try_resume()  # back to the trunk at the cooldown's start
        self.history, self.in_branch, self.pop.horizon = history, False, None
        self.finished.append(point)
        self.save()
        return point

    # -- state ---------------------------------------------------------------------------------
    def save(self, bar=None) -> None:
        """Bring every rank up to date, log the resets, and checkpoint (not inside a branch)."""
        self.pop.sync()
        self._record_events(bar)
        if self.in_branch:
            return
        with self.files.clock.phase(self.name, "checkpoints"):
            self.checkpoints.save(self.pop.steps, lambda path: state.save_arm(
                path, self.pop, self.stream, self.history, self.scoring.best, self.events,
                self.cfg.members, self.extra_state()))
        self.saved_at = self.pop.steps

    def extra_state(self) -> dict:
        """What this runner keeps in its checkpoint beside the population's state."""
        return {**self.births.state(), "finished": [p.to_json() for p in self.finished]}

    def try_resume(self) -> bool:
        """Restore the latest checkpoint, if there is one (a resume, or a `wsd` branch's
        return to its trunk: timed as checkpoints)."""
        path = self.checkpoints.latest()
        if path is None:
            return False
        with self.files.clock.phase(self.name, "checkpoints"):
            self.history, self.scoring.best, self.events, extra = state.restore_arm(
                path, self.pop, self.stream, self.cfg.members, self.prepare_elders)
        self.pop.sync()
        self.load_extra_state(extra)
        self.saved_at = self.pop.steps
        return True

    def prepare_elders(self, extra: dict) -> None:
        """Build the elders a checkpoint's own state names, before their carried states are
        restored (none here: a runner's elders are given when it is built)."""

    def load_extra_state(self, extra: dict) -> None:
        """The runner's own state from a checkpoint (`extra_state`'s)."""
        self.births.load_state(extra)
        self.finished = [FinishedRun(**p) for p in extra.get("finished", [])]

    def _record_events(self, bar=None) -> None:
        """Print the population's resets and append them to the lineage."""
        for event in self.pop.events:
            self.files.say(f"{self.name}: {event['member']} reset at step {event['step']} "
                           f"({event['reason']}); the others go on", bar)
        self._log(self.pop.events)
        self.pop.events.clear()

    def _log(self, rows: list[dict]) -> None:
        """Births, deaths and resets of this arm: kept in its state, appended to lineage.jsonl."""
        if not rows:
            return
        rows = [{"arm": self.name, **row} for row in rows]
        self.events.extend(rows)
        self.files.append_lineage(rows)

    def curve(self) -> list[DevPoint]:
        return [DevPoint.of_row(r) for r in self.history]


def isolated(social: SocialConfig) -> SocialConfig:
    """The same settings with every channel closed: members train alone."""
    return replace(social, channel="none", language_every=0)
