"""Run configuration: typed dataclasses per concern, read from TOML presets or files.

Every field is checked when a config is built (`__post_init__`, so a `dataclasses.replace` is
checked too): a wrong type or a value out of range is a UserError that names the key
(`train.batch_size`). Choices are `Literal` types. The `[compare]` section lives in
config/compare.py; reading TOML, presets and `--set` overrides in config/files.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from multitudes.errors import UserError
from multitudes.config.compare import CompareConfig
from multitudes.config.genome import FAMILIES, SWITCHABLE, Genome
from multitudes.config.typed import check_fields, non_negative, positive, within

DEFAULT_GRAD_CLIP = 1.0  # train.grad_clip's default; adaptive evaluation clips with it too

Trust = Literal["uniform", "fitness", "topk", "random_peer"]


@dataclass
class DataConfig:
    corpus: str = "sample"
    """`sample`, `enwik8`, `enwik9` or `file:PATH`."""
    unique_bytes: int = 0
    """Cut the training split to its first U bytes, read in epochs (0: the whole split)."""

    def __post_init__(self) -> None:
        check_fields(self, "data.")
        non_negative(self, "data.", "unique_bytes")


@dataclass
class TrainConfig:
    batch_size: int = 32
    """B: windows per step; every member reads the same windows."""
    real_bytes: int = 1_000_000
    """Real training bytes the run consumes (B * T per step)."""
    sampling: Literal["random", "contiguous"] = "random"
    """`random` (windows in a seeded random order) or `contiguous` (B lanes read in order; a
    member that holds state, an RNN, carries it across windows and is scored with it)."""
    schedule: Literal["constant", "wsd", "cosine"] = "constant"
    """`constant` (warmup then flat), `wsd` (warmup, stable, then a (1 - sqrt) cooldown over the
    last `cooldown` of the run: Hägele et al. 2024) or `cosine`."""
    cooldown: float = 0.2
    """`wsd`: the fraction of a run's steps spent cooling down to zero."""
    min_lr_ratio: float = 0.1
    """Cosine floor as a fraction of the peak lr."""
    grad_clip: float = DEFAULT_GRAD_CLIP
    """Global gradient-norm clip per member (0: off)."""
    eval_every: int = 50
    """Steps between evaluations on the dev slice."""
    dev_bytes: int = 65_536
    """Bytes of the validation split used as the dev slice for curves and fitness."""
    eval_stride: int = 0
    """Stride of the evaluation windows (0: half the context); see evaluation/bpb.py."""
    checkpoint_every: int = 250
    """Steps between checkpoints (0: only at the end of each stretch of training), so that a
    run can be killed any time and resumed, whatever config it came from."""
    seed: int = 0
    """Seed of the batch stream (member seeds live in their genomes)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """`auto` (cuda when present), `cpu` or `cuda`."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """The members' training steps: `auto` (bf16 autocast on CUDA, fp32 on the CPU), `fp32`,
    or `bf16` (autocast on either; BENCHMARKS.md measures what it buys on a CPU). Scoring on
    the dev slice, valid and test keeps `auto`'s choice (fp32 on the CPU) whatever this says."""
    compile: bool = False
    """`torch.compile` each member's training forward (in place: its weights, checkpoints and
    genome unchanged; the numbers differ from eager in the last digits). Off by default: on
    the CPU it buys nothing measurable (BENCHMARKS.md, `benchmarks/throughput.py`'s compiled
    row) for seconds of compilation per member and per reborn member."""
    side_by_side: bool = True
    """Step the members concurrently: on the CPU one thread each, up to the process's thread
    count; on a GPU one CUDA stream each (population/side_by_side.py); false: one after
    another, each on every thread (one stream)."""

    def __post_init__(self) -> None:
        check_fields(self, "train.")
        positive(self, "train.", "batch_size", "real_bytes", "eval_every", "dev_bytes")
        non_negative(self, "train.", "eval_stride", "checkpoint_every", "grad_clip")
        within(self, "train.", "cooldown", 0, 1, open_=True)
        within(self, "train.", "min_lr_ratio", 0, 1)


@dataclass
class SocialConfig:
    channel: Literal["none", "logit", "complement"] = "logit"
    """`none` (isolated members), `logit` (train towards the peers' distributions) or
    `complement` (train for the mixture with the peers: negative correlation learning;
    population/channels.py). A member's `alpha` weighs either."""
    trust: Trust = "uniform"
    """How a listener weighs its peers: `uniform`, `fitness`, `topk`, `random_peer`."""
    top_k: int = 1
    """Peers a `topk` listener trusts (the fittest ones)."""
    fitness_temperature: float = 0.05
    """`fitness` trust: weights are softmax(-dev_bpb / this)."""
    listen_after: int = 0
    """Real bytes read before the logit channel opens (peers are noise at birth)."""
    language_every: int = 0
    """Language channel: steps between speaking turns (0: off)."""
    language_prompts: int = 4
    """Prompts each speaker continues per turn, cut from the current real batch."""
    language_prompt_length: int = 32
    """Bytes of real text in each prompt."""
    language_length: int = 64
    """L: bytes each speaker samples per prompt."""
    language_temperature: float = 1.0
    """Sampling temperature of speakers."""
    language_batch: int = 4
    """Culture texts a listener reads per step once the buffer has any."""
    beta: float = 0.1
    """Weight of the language channel's loss."""
    culture_size: int = 256
    """Texts the culture buffer keeps (oldest out)."""

    @property
    def listens(self) -> bool:
        """Whether members hear their peers: a channel is open (isolated arms: none)."""
        return self.channel != "none" or self.language_every > 0

    def __post_init__(self) -> None:
        check_fields(self, "social.")
        positive(self, "social.", "top_k", "fitness_temperature", "language_prompts",
                 "language_length", "language_temperature", "language_batch", "culture_size",
                 "language_prompt_length")
        non_negative(self, "social.", "listen_after", "language_every", "beta")


@dataclass
class EvolutionConfig:
    every: int = 0
    """G: steps between generations (0: no evolution). A generation follows a dev evaluation."""
    replace_fraction: float = 0.25
    """r: the worst fraction of the population that dies each generation (at least one)."""
    min_age: int = 0
    """Steps a member must have lived before it can die (PBT's "ready"): late bloomers, such as
    the RNNs, are judged only once they had time to learn."""
    tournament: int = 2
    """Entrants per parent tournament (the fittest on dev bpb wins)."""
    crossover: float = 0.5
    """Chance that a birth crosses two parents; otherwise it mutates one."""
    family_switch: float = 0.05
    """Chance that a mutation switches the family."""
    families: list[str] = field(default_factory=lambda: list(SWITCHABLE))
    """The families a switch may choose (a member of another family may still switch out):
    the four of the first populations by default, so that a new family changes no run that
    does not ask for it (e.g. `["gpt", "looped", "lstm", "gru", "ssm"]`)."""
    budget: int = 0
    """Parameters a newborn may have (0: twice the largest founder's count)."""
    inherit: Literal["none", "parent"] = "none"
    """`none` (newborns start from scratch) or `parent` (copy weights and optimizer, as PBT)."""
    childhood_steps: int = 0
    """C: steps during which a newborn listens harder."""
    childhood_alpha: float = 1.0
    """The newborn's listen weight during its childhood."""
    seed: int = 0
    """Seed of the evolution's own generator (deaths, parents, operators)."""

    def __post_init__(self) -> None:
        check_fields(self, "evolution.")
        non_negative(self, "evolution.", "every", "budget", "childhood_steps", "seed",
                     "childhood_alpha", "min_age")
        positive(self, "evolution.", "tournament")
        for name in ("replace_fraction", "crossover", "family_switch"):
            within(self, "evolution.", name, 0, 1)
        if not isinstance(self.families, list) or len(set(self.families)) < 2 \
                or len(set(self.families)) != len(self.families) \
                or any(f not in FAMILIES for f in self.families):
            raise UserError(f"evolution.families={self.families!r}: expected a list of at least "
                            f"two distinct families of {', '.join(FAMILIES)}")


@dataclass
class DistributedConfig:
    thoughts: Literal["float32", "bfloat16", "topk"] = "float32"
    """How the peers' distributions travel between ranks: `float32` (exact), `bfloat16` (half
    the bytes) or `topk` (the k likeliest bytes per position). Applied on one process too, so
    the numbers do not depend on the number of ranks."""
    top_k: int = 32
    """k for `thoughts = "topk"` (fewer than the 256 byte values)."""
    timeout: float = 300.0
    """Seconds a rank waits for its peers in a collective before the run stops with an error."""

    def __post_init__(self) -> None:
        check_fields(self, "distributed.")
        if not 0 < self.top_k < 256:
            raise UserError(f"distributed.top_k={self.top_k}: must be in 1..255")
        positive(self, "distributed.", "timeout")


def check_run_name(name: str, key: str, names: str) -> None:
    """A run's or a study's name: it names a directory under runs/, so it cannot climb out."""
    if not name or name.startswith(".") or not all(c.isascii() and (c.isalnum() or c in "-_.")
                                                   for c in name):
        raise UserError(f"{key}={name!r}: a name is letters, digits, '-', '_' and '.' (it "
                        f"names the default directory {names})")


@dataclass
class RunConfig:
    name: str = "custom"
    description: str = ""
    regime: Literal["stream", "data-limited"] = "stream"
    """`stream` (every real byte new) or `data-limited` (unique_bytes read in epochs)."""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    social: SocialConfig = field(default_factory=SocialConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    members: list[Genome] = field(default_factory=lambda: [Genome()])

    def __post_init__(self) -> None:
        check_fields(self, "")
        for key, cls in (("data", DataConfig), ("train", TrainConfig), ("social", SocialConfig),
                         ("compare", CompareConfig), ("evolution", EvolutionConfig),
                         ("distributed", DistributedConfig)):
            if not isinstance(getattr(self, key), cls):
                raise UserError(f"{key} must be a table")
        if not all(isinstance(g, Genome) for g in self.members):
            raise UserError("members must be an array of tables ([[members]])")
        check_run_name(self.name, "name", "runs/COMMAND-NAME")
        if (self.regime == "data-limited") != (self.data.unique_bytes > 0):
            raise UserError("regime 'data-limited' needs data.unique_bytes > 0, and "
                            "'stream' needs data.unique_bytes = 0")
        if not self.members:
            raise UserError("the config has no [[members]]")
        for arm in ("distill", "generations", "snapshot_cycles", "ensemble_compute",
                    "ensemble_members", "retuned"):
            if getattr(self.compare, arm) and self.regime != "data-limited":
                raise UserError(f"compare.{arm} is an arm of the data-limited regime (set "
                                f"regime = \"data-limited\" and data.unique_bytes)")
        if self.compare.reference_record and self.regime != "data-limited":
            raise UserError("compare.reference_record keeps the data-limited regime's reference "
                            "curve (set regime = \"data-limited\" and data.unique_bytes)")
        if self.compare.mixture_fit != "dev" and self.regime != "data-limited":
            raise UserError("compare.mixture_fit='unique' carves the mixture's slice out of the "
                            "data-limited regime's unique bytes (set regime = \"data-limited\" "
                            "and data.unique_bytes)")
        if self.compare.generations and self.compare.evolution_ablation:
            raise UserError("compare.generations and compare.evolution_ablation: one at a time")
        if self.evolution.every and self.evolution.every % self.train.eval_every:
            raise UserError(f"evolution.every={self.evolution.every} must be a multiple of "
                            f"train.eval_every={self.train.eval_every} (fitness is dev bpb)")
        if self.evolution.every and len(self.members) < 2:
            raise UserError("evolution needs at least 2 members (the best never dies)")
        if self.evolution.every or self.compare.generations:
            from multitudes.evolution import generations, operators  # they import the config
            operators.check_reachable(self.members, tuple(self.evolution.families),
                                      self.evolution.family_switch,
                                      generations.default_budget(self.evolution, self.members))
        contexts = {g.context for g in self.members}
        if len(contexts) > 1:
            raise UserError(f"members.*.context must agree (all members read the same windows), "
                            f"got {sorted(contexts)}")
        if self.social.language_every and self.social.language_length >= self.context:
            raise UserError(f"social.language_length={self.social.language_length} must be less "
                            f"than the context {self.context}: a speaker continues a prompt of "
                            f"real bytes within one window")
        if self.train.eval_stride > self.context:
            raise UserError(f"train.eval_stride={self.train.eval_stride} must be at most the "
                            f"context {self.context} (0: half the context)")

    @property
    def context(self) -> int:
        return self.members[0].context

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
