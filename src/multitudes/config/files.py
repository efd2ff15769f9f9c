"""Configs from files: TOML presets and config files, `--set` overrides, JSON records.

`--set key=value` overrides use dotted names, the way minGPT's overrides fail loudly on a typo;
`members.1.lr` addresses one member and `members.*.lr` all of them. The dataclasses in config/schema.py
check every value; this file checks that every key is known.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import fields
from pathlib import Path

from multitudes.config.schema import (CompareConfig, DataConfig, DistributedConfig, EvolutionConfig,
                               RunConfig, SocialConfig, TrainConfig)
from multitudes.errors import UserError
from multitudes.config.genome import Genome

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESET_DIR = Path(__file__).parent / "presets"
SECTIONS = {"data": DataConfig, "train": TrainConfig, "social": SocialConfig,
            "compare": CompareConfig, "evolution": EvolutionConfig,
            "distributed": DistributedConfig}


def _known(cls, data, key: str) -> dict:
    """`data` as a table of `cls`'s fields; an unknown key names itself and the known ones."""
    if not isinstance(data, dict):
        raise UserError(f"{key} must be a table")
    known = [f.name for f in fields(cls)]
    for name in data:
        if name not in known:
            prefix = f"{key}." if key else ""
            raise UserError(f"unknown key {prefix}{name} (known: {', '.join(sorted(known))})")
    return data


def from_dict(data: dict) -> RunConfig:
    """A checked RunConfig from nested tables (a TOML file, or config.json's record)."""
    data = dict(_known(RunConfig, copy.deepcopy(data), ""))
    for name, cls in SECTIONS.items():
        if name in data:
            data[name] = cls(**_known(cls, data[name], name))
    if "members" in data:
        if not isinstance(data["members"], list):
            raise UserError("members must be an array of tables ([[members]])")
        data["members"] = [Genome.from_dict(_known(Genome, m, f"members.{i}"), f"members.{i}")
                           for i, m in enumerate(data["members"])]
    return RunConfig(**data)


def parse_override(text: str) -> tuple[list[str], object]:
    """`train.batch_size=64` -> (["train", "batch_size"], 64); values are TOML, else strings."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    except RecursionError:
        raise UserError(f"--set {key.strip()}: the value is nested too deeply") from None
    if depth(value) > MAX_DEPTH or key.count(".") > MAX_DEPTH:
        raise UserError(f"--set {key.strip()[:60]}: nested too deeply")
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        if path[0] == "members" and len(path) == 3:
            members = data.setdefault("members", [{}])
            if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
                raise UserError(f"--set {text!r}: members is not an array of tables here")
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
    return {p.stem: read_toml(p).get("description", "") for p in sorted(PRESET_DIR.glob("*.toml"))}


def read_toml(path: Path, what: str = "config file") -> dict:
    """A TOML file's tables; a missing, unreadable, empty or invalid file is one line."""
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{what} {path} cannot be read: {e}") from None
    if not text.strip():
        raise UserError(f"{what} {path} is empty")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{what} {path} is not valid TOML: {e}") from None
    except RecursionError:  # tomllib descends once per level of nesting
        raise UserError(f"{what} {path} is nested too deeply to be a config") from None
    if depth(doc) > MAX_DEPTH:  # copies and checks of the tables recurse as deeply
        raise UserError(f"{what} {path} is nested too deeply to be a config (more than "
                        f"{MAX_DEPTH} levels of tables or arrays)")
    return doc


MAX_DEPTH = 16  # a config nests 4 levels (a study: base.train.key; members.0.key)


def depth(doc) -> int:
    """Levels of nested tables and arrays, counted without recursion (a hostile file may
    nest a hundred thousand deep)."""
    deepest, stack = 0, [(doc, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, level + 1)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((child, level + 1) for child in
                         (node.values() if isinstance(node, dict) else node))
    return deepest


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
    return from_dict(apply_overrides(read_toml(path), list(overrides)))
