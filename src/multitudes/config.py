"""Run configuration: typed dataclasses per concern, read from TOML presets or files.

Every field is checked when the config is built: an unknown key, a wrong type or a value out of
range is a UserError that names the key (`train.batch_size`), the way minGPT's dotted overrides
fail loudly on a typo. `--set key=value` overrides use the same dotted names; `members.1.lr`
addresses one member and `members.*.lr` all of them.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from multitudes.errors import UserError
from multitudes.genome import Genome

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass
class DataConfig:
    corpus: str = "sample"
    """`sample`, `enwik8`, `enwik9` or `file:PATH`."""
    unique_bytes: int = 0
    """Cut the training split to its first U bytes, read in epochs (0: the whole split)."""


@dataclass
class TrainConfig:
    batch_size: int = 32
    """B: windows per step; every member reads the same windows."""
    real_bytes: int = 1_000_000
    """Real training bytes the run consumes (B * T per step)."""
    sampling: str = "random"
    """`random` (windows in a seeded random order) or `contiguous` (B lanes read in order; a
    member that holds state, an RNN, carries it across windows and is scored with it)."""
    schedule: str = "constant"
    """`constant` (warmup then flat), `wsd` (warmup, stable, then a (1 - sqrt) cooldown over the
    last `cooldown` of the run: Hägele et al. 2024) or `cosine`."""
    cooldown: float = 0.2
    """`wsd`: the fraction of a run's steps spent cooling down to zero."""
    min_lr_ratio: float = 0.1
    """Cosine floor as a fraction of the peak lr."""
    grad_clip: float = 1.0
    """Global gradient-norm clip per member (0: off)."""
    eval_every: int = 50
    """Steps between evaluations on the dev slice."""
    dev_bytes: int = 65_536
    """Bytes of the validation split used as the dev slice for curves and fitness."""
    eval_stride: int = 0
    """Stride of the evaluation windows (0: half the context); see evaluate.py."""
    checkpoint_every: int = 0
    """Steps between checkpoints (0: only at the end)."""
    seed: int = 0
    """Seed of the batch stream (member seeds live in their genomes)."""
    device: str = "auto"
    """`auto` (cuda when present), `cpu` or `cuda`."""

    def check(self) -> None:
        for name in ("batch_size", "real_bytes", "eval_every", "dev_bytes"):
            _positive(self, name, "train")
        for name in ("eval_stride", "checkpoint_every", "grad_clip"):
            _non_negative(self, name, "train")
        _choice(self, "schedule", ("constant", "wsd", "cosine"), "train")
        _choice(self, "sampling", ("random", "contiguous"), "train")
        for name in ("cooldown",):
            if not 0 < getattr(self, name) < 1:
                raise UserError(f"train.{name}={getattr(self, name)}: must be in (0, 1)")
        _choice(self, "device", ("auto", "cpu", "cuda"), "train")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UserError(f"train.min_lr_ratio={self.min_lr_ratio}: must be in [0, 1]")


@dataclass
class SocialConfig:
    channel: str = "logit"
    """`none` (isolated members) or `logit` (listen to the peers' distributions)."""
    trust: str = "uniform"
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

    def check(self) -> None:
        _choice(self, "channel", ("none", "logit"), "social")
        _choice(self, "trust", ("uniform", "fitness", "topk", "random_peer"), "social")
        for name in ("top_k", "fitness_temperature", "language_prompts", "language_length",
                     "language_temperature", "language_batch", "culture_size",
                     "language_prompt_length"):
            _positive(self, name, "social")
        for name in ("listen_after", "language_every", "beta"):
            _non_negative(self, name, "social")


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
    budget: int = 0
    """Parameters a newborn may have (0: twice the largest founder's count)."""
    inherit: str = "none"
    """`none` (newborns start from scratch) or `parent` (copy weights and optimizer, as PBT)."""
    childhood_steps: int = 0
    """C: steps during which a newborn listens harder."""
    childhood_alpha: float = 1.0
    """The newborn's listen weight during its childhood."""
    seed: int = 0
    """Seed of the evolution's own generator (deaths, parents, operators)."""

    def check(self) -> None:
        for name in ("every", "budget", "childhood_steps", "seed", "childhood_alpha", "min_age"):
            _non_negative(self, name, "evolution")
        _positive(self, "tournament", "evolution")
        for name in ("replace_fraction", "crossover", "family_switch"):
            if not 0 <= getattr(self, name) <= 1:
                raise UserError(f"evolution.{name}={getattr(self, name)}: must be in [0, 1]")
        _choice(self, "inherit", ("none", "parent"), "evolution")


@dataclass
class CompareConfig:
    multiplier: float = 2.0
    """M: the isolated arm reads M x the social arm's real bytes, for the efficiency curve."""
    read_on_points: int = 4
    """`wsd` schedule: finished isolated runs (cooldowns branched off its stable trunk) at
    N x (1 + j (M - 1) / points), j = 1..points, read until one reaches the social arm."""
    evolution_ablation: bool = False
    """Also run `social+evolution` beside a `social` arm without evolution (the ablation)."""

    def check(self) -> None:
        if not self.multiplier >= 1:
            raise UserError(f"compare.multiplier={self.multiplier}: must be at least 1")
        _positive(self, "read_on_points", "compare")


@dataclass
class DistributedConfig:
    thoughts: str = "float32"
    """How the peers' distributions travel between ranks: `float32` (exact), `bfloat16` (half
    the bytes) or `topk` (the k likeliest bytes per position). Applied on one process too, so
    the numbers do not depend on the number of ranks."""
    top_k: int = 32
    """k for `thoughts = "topk"` (fewer than the 256 byte values)."""
    timeout: float = 300.0
    """Seconds a rank waits for its peers in a collective before the run stops with an error."""

    def check(self) -> None:
        _choice(self, "thoughts", ("float32", "bfloat16", "topk"), "distributed")
        if not 0 < self.top_k < 256:
            raise UserError(f"distributed.top_k={self.top_k}: must be in 1..255")
        _positive(self, "timeout", "distributed")


@dataclass
class RunConfig:
    name: str = "custom"
    description: str = ""
    regime: str = "stream"
    """`stream` (every real byte new) or `data-limited` (unique_bytes read in epochs)."""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    social: SocialConfig = field(default_factory=SocialConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    members: list[Genome] = field(default_factory=lambda: [Genome()])

    def check(self) -> None:
        _choice(self, "regime", ("stream", "data-limited"), "")
        if not self.name or self.name.startswith(".") or not all(
                c.isalnum() or c in "-_." for c in self.name):
            raise UserError(f"name={self.name!r}: a run name is letters, digits, '-', '_' and "
                            f"'.' (it names the default run directory runs/COMMAND-NAME)")
        if (self.regime == "data-limited") != (self.data.unique_bytes > 0):
            raise UserError("regime 'data-limited' needs data.unique_bytes > 0, and "
                            "'stream' needs data.unique_bytes = 0")
        if self.data.unique_bytes < 0:
            raise UserError("data.unique_bytes must be non-negative")
        for part in (self.train, self.social, self.compare, self.evolution, self.distributed):
            part.check()
        if not self.members:
            raise UserError("the config has no [[members]]")
        if self.evolution.every and self.evolution.every % self.train.eval_every:
            raise UserError(f"evolution.every={self.evolution.every} must be a multiple of "
                            f"train.eval_every={self.train.eval_every} (fitness is dev bpb)")
        if self.evolution.every and len(self.members) < 2:
            raise UserError("evolution needs at least 2 members (the best never dies)")
        contexts = {g.context for g in self.members}
        if len(contexts) > 1:
            raise UserError(f"members.*.context must agree (all members read the same windows), "
                            f"got {sorted(contexts)}")

    @property
    def context(self) -> int:
        return self.members[0].context

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _positive(obj, name: str, section: str) -> None:
    if not getattr(obj, name) > 0:
        raise UserError(f"{section}.{name}={getattr(obj, name)}: must be positive")


def _non_negative(obj, name: str, section: str) -> None:
    if getattr(obj, name) < 0:
        raise UserError(f"{section}.{name}={getattr(obj, name)}: must be non-negative")


def _choice(obj, name: str, options: tuple, section: str) -> None:
    if getattr(obj, name) not in options:
        key = f"{section}.{name}" if section else name
        raise UserError(f"{key}={getattr(obj, name)!r}: expected one of {', '.join(options)}")


def _typed(value, annotation: str, key: str):
    """Check one scalar against its annotation; ints are accepted where floats are expected."""
    want = {"int": int, "float": (int, float), "str": str, "bool": bool}[annotation]
    if isinstance(value, bool) and annotation != "bool" or not isinstance(value, want):
        raise UserError(f"{key}={value!r}: expected {annotation}, got {type(value).__name__}")
    return float(value) if annotation == "float" else value


def _build_section(cls, data, key: str):
    if not isinstance(data, dict):
        raise UserError(f"{key} must be a table")
    known = {f.name: f for f in fields(cls)}
    for name in data:
        if name not in known:
            raise UserError(f"unknown key {key}.{name} (known: {', '.join(known)})")
    return cls(**{name: _typed(v, known[name].type, f"{key}.{name}") for name, v in data.items()})


def from_dict(data: dict) -> RunConfig:
    data = copy.deepcopy(data)
    sections = {"data": DataConfig, "train": TrainConfig, "social": SocialConfig,
                "compare": CompareConfig, "evolution": EvolutionConfig,
                "distributed": DistributedConfig}
    known = {f.name for f in fields(RunConfig)}
    for name in data:
        if name not in known:
            raise UserError(f"unknown key {name} (known: {', '.join(sorted(known))})")
    kwargs = {name: _build_section(cls, data[name], name)
              for name, cls in sections.items() if name in data}
    for name in ("name", "description", "regime"):
        if name in data:
            kwargs[name] = _typed(data[name], "str", name)
    if "members" in data:
        if not isinstance(data["members"], list):
            raise UserError("members must be an array of tables ([[members]])")
        kwargs["members"] = [_build_genome(m, f"members.{i}")
                             for i, m in enumerate(data["members"])]
    cfg = RunConfig(**kwargs)
    cfg.check()
    return cfg


def _build_genome(data, key: str) -> Genome:
    if not isinstance(data, dict):
        raise UserError(f"{key} must be a table")
    hints = typing.get_type_hints(Genome)
    known = {f.name for f in fields(Genome)}
    for name, value in data.items():
        if name not in known:
            raise UserError(f"unknown key {key}.{name} (known: {', '.join(sorted(known))})")
        _typed(value, hints[name].__name__, f"{key}.{name}")
    return Genome(**{k: float(v) if hints[k] is float else v for k, v in data.items()})


def parse_override(text: str) -> tuple[list[str], object]:
    """`train.batch_size=64` -> (["train", "batch_size"], 64); values are TOML, else strings."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        if path[0] == "members" and len(path) == 3:
            members = data.setdefault("members", [{}])
            if path[1] == "*":
                targets = members
            elif path[1].isdigit() and int(path[1]) < len(members):
                targets = [members[int(path[1])]]
            else:
                raise UserError(f"--set {text!r}: no member {path[1]} "
                                f"(the config has {len(members)})")
            for member in targets:
                member[path[2]] = value
            continue
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {text!r}: {part} is not a table")
        node[path[-1]] = value
    return data


def list_presets() -> dict[str, str]:
    return {p.stem: _read_toml(p).get("description", "") for p in sorted(PRESET_DIR.glob("*.toml"))}


def _read_toml(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"config file {path} cannot be read: {e}") from None
    if not text.strip():
        raise UserError(f"config file {path} is empty")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"config file {path} is not valid TOML: {e}") from None


def load(preset: str | None = None, config_file: str | None = None,
         overrides: list[str] = ()) -> RunConfig:
    """Build a RunConfig from a preset name or a TOML file, then `--set` overrides."""
    if (preset is None) == (config_file is None):
        raise UserError("give exactly one of --preset NAME or --config FILE.toml")
    if preset is not None:
        if not preset.replace("-", "").replace("_", "").isalnum():
            raise UserError(f"unknown preset {preset!r}: a preset is a name such as quick "
                            f"(known: {', '.join(list_presets())})")
        path = PRESET_DIR / f"{preset}.toml"
        if not path.is_file():
            raise UserError(f"unknown preset {preset!r} (known: {', '.join(list_presets())})")
    else:
        path = Path(config_file)
    return from_dict(apply_overrides(_read_toml(path), list(overrides)))
