"""From a preset, a config file, ``--set`` strings and explicit values to a checked `Config`, and
the check that a resumed run's config changed nothing that matters."""

from __future__ import annotations

import copy
import json
import os
import stat
from pathlib import Path
from typing import Any

import tomllib
import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from ..errors import UserError, did_you_mean, unknown
from ..nested import differences
from ..registry import SPACES, STRATEGIES
from ..userpaths import read_user_text, stat_user_path
from .presets import PRESETS
from .schema import Config, SearchConfig
from .values import _SHORT, _bound, strategy_keys


def _deep_update(base: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = value
    return base


def _check_keys(tree: dict, model: type[BaseModel], where: str = "") -> None:
    """Unknown keys -> UserError with the closest valid key (before pydantic sees them)."""
    for key, value in tree.items():
        fields = dict(model.model_fields)
        if model is SearchConfig:
            fields.update(dict.fromkeys(strategy_keys()))
        if key not in fields:
            full = f"{where}{key}"
            valid = [f"{where}{k}" for k in fields]
            raise UserError(
                f"unknown config key '{full}'.{did_you_mean(full, valid)} "
                f"Valid keys here: {', '.join(valid)}."
            )
        annotation = fields[key].annotation if fields[key] is not None else None
        if (
            isinstance(value, dict)
            and isinstance(annotation, type)
            and issubclass(annotation, BaseModel)
        ):
            _check_keys(value, annotation, f"{where}{key}.")


_INT64_MAX = 2**63 - 1


def _check_machine_ints(tree: Any, where: str = "") -> None:
    """Refuse (UserError) an integer setting beyond the 64-bit range, naming its key: torch and
    numpy cannot even take it (OverflowError), so no range check downstream would say which."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            _check_machine_ints(value, f"{where}{key}.")
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            _check_machine_ints(value, f"{where}[{i}].")
    elif isinstance(tree, int) and not isinstance(tree, bool) and abs(tree) > _INT64_MAX:
        digits = len(str(abs(tree))) if abs(tree).bit_length() < 14000 else "thousands of"
        raise UserError(
            f"bad config value for '{where.rstrip('.')}': a {digits}-digit integer, beyond the "
            "64-bit range (±9.2e18) that every size and count must fit in."
        )


def parse_set(assignments: list[str]) -> dict:
    """``["search.epochs=5", "search.ops=[none,sep_conv_3x3]"]`` -> nested dict (YAML values)."""
    tree: dict = {}
    for item in assignments:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value (e.g. search.epochs=5), got '{item}'.")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except (yaml.YAMLError, ValueError):  # ValueError: an integer of over 4300 digits
            value = raw
        except RecursionError:
            raise UserError(
                f"--set {key.strip()}=... nests lists or mappings deeper than a setting ever "
                "needs (hundreds of levels)."
            ) from None
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree


def read_config_file(path: str | os.PathLike) -> dict:
    """Read a YAML, TOML or JSON config file into a nested dict."""
    path = Path(path)
    st = stat_user_path(path, "config file")
    if st is None:
        raise UserError(f"config file {path} does not exist. Give a .yaml, .toml or .json file.")
    if stat.S_ISDIR(st.st_mode):
        raise UserError(
            f"config file {path} is a directory (a folder), not a file. Give a .yaml, .toml or "
            ".json file."
        )
    try:
        # refuses a FIFO or a device before opening it; a BOM (as Windows editors write) is read
        text = read_user_text(path, "config file", encoding="utf-8-sig")
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
        # the parsers' messages span lines (YAML quotes the spot): one line for the CLI
        reason = " ".join(str(e).split())
        raise UserError(f"cannot parse config file {path}: {reason}") from None
    except RecursionError:
        raise UserError(
            f"cannot parse config file {path}: it nests lists or mappings deeper than a config "
            "ever needs (hundreds of levels). Flatten it."
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(
            f"config file {path} must hold a mapping of keys, not {type(data).__name__}."
        )
    return data


def build_config(
    preset: str | None = None,
    file: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    base: dict | None = None,
    also_strategies: tuple[str, ...] = (),
    **explicit: Any,
) -> Config:
    """Resolve a Config from a preset, a config file, ``--set`` strings and explicit values.

    ``explicit`` takes dotted keys written with double underscores (``data__dataset="mnist"``)
    or top-level keys (``seed=1``); None values are ignored. ``base`` (a resolved config, e.g. a
    run's config.json when resuming) replaces the preset as the lowest layer.
    ``also_strategies``: strategies besides ``search.strategy`` whose settings may be given (and
    are kept), for `scinas compare`, which runs them from the same config.
    """
    layers: list[dict] = []
    file_tree = read_config_file(file) if file else {}
    set_tree = parse_set(overrides or [])
    explicit_tree: dict = {}
    for key, value in explicit.items():
        if value is None:
            continue
        node = explicit_tree
        parts = key.split("__")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    preset_name = (
        preset
        or explicit_tree.get("preset")
        or (base or {}).get("preset")
        or set_tree.get("preset")
        or file_tree.get("preset")
        or "tiny"
    )
    if preset_name not in PRESETS:
        raise unknown("preset", str(preset_name), PRESETS)
    bottom = with_added_settings(base) if base is not None and not preset else PRESETS[preset_name]
    layers = [copy.deepcopy(bottom), file_tree, set_tree, explicit_tree]
    tree: dict = {"preset": preset_name}
    try:
        for layer in layers:
            _check_keys(layer, Config)
            _deep_update(tree, copy.deepcopy(layer))
        tree["preset"] = preset_name
        _check_machine_ints(tree)
    except RecursionError:
        raise UserError(
            "bad config: a value nests lists or mappings deeper than any setting needs "
            "(hundreds of levels). Flatten it."
        ) from None
    given = {
        key
        for layer in (file_tree, set_tree, explicit_tree)
        if isinstance(layer.get("train"), dict)
        for key in layer["train"]
    }
    if base is None and "batch_size" in given and "min_epoch_steps" not in given:
        tree["train"]["min_epoch_steps"] = 0  # a batch the user gives is the batch to train at
    explicit_search = {
        key
        for layer in (file_tree, set_tree, explicit_tree)
        if isinstance(layer.get("search"), dict)
        for key in layer["search"]
    }
    try:
        context = {
            "explicit_search": explicit_search,
            "also_strategies": also_strategies,
            "refused": [],
        }
        cfg = Config.model_validate(tree, context=context)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if isinstance(err.get("input"), dict):  # a whole section failed a cross-field check
            raise UserError(f"bad config{f' in {loc!r}' if loc else ''}: {msg}.") from None
        raise UserError(
            f"bad config value for '{loc}': {msg} (got {_SHORT.repr(err.get('input'))})"
            f"{_bound(err)}."
        ) from None
    cfg.search._refused = tuple(context["refused"])
    return cfg


def check_settings_apply(cfg: Config) -> None:
    """Refuse (UserError) a setting the user gave that belongs to another strategy than the
    chosen one (recorded by `build_config`; called once the other checks have passed)."""
    if cfg.search._refused:
        raise UserError(cfg.search._refused[0] + ".")


def config_to_dict(cfg: Config) -> dict:
    return cfg.model_dump(mode="json")


# Fields a resumed run may change (with --allow-changes): they do not make the finished part of
# the run meaningless. Everything else (data, seed, sizes, strategy, learning rates) must match.
HARMLESS_CHANGES = (
    "search.epochs",
    "train.epochs",
    "device",
    "deterministic",
    "search.storage",
    "report",
    "compare.budget",
    "compare.search_share",
)


# Settings added after runs were written without them, each with the value that reproduces
# such a run: a run resumed by a later scinas goes on as it started (the new default is for new
# runs). A strategy's or space's setting applies where the run's strategy or space has it.
ADDED_SETTINGS: dict[str, Any] = {
    "train.min_epoch_steps": 0,  # the preset's batch, not cut for small training sets
    "search.scores": "metric",  # lineage decisions on right-or-wrong scores
    "search.decision_val": None,  # lineage decisions on the split data.max_val leaves
    "precision": "fp32",  # float32 throughout, as before auto
}


def with_added_settings(config: dict) -> dict:
    """A copy of a stored config (a run's config.json) with each `ADDED_SETTINGS` entry it
    lacks."""
    out = copy.deepcopy(config)
    search = out.get("search") if isinstance(out.get("search"), dict) else {}
    own: set[str] = set()
    for registry, name in ((STRATEGIES, search.get("strategy")), (SPACES, search.get("space"))):
        if isinstance(name, str) and name in registry:
            own |= set(registry.get(name).Settings.model_fields)
    for key, value in ADDED_SETTINGS.items():
        section, _, field = key.rpartition(".")  # "" for a top-level setting
        node = out.get(section) if section else out
        applies = section != "search" or field in SearchConfig.model_fields or field in own
        if isinstance(node, dict) and field not in node and applies:
            node[field] = value
    return out


def check_resumable(old: dict, new: dict, allow_changes: bool) -> None:
    """A resumed run's config (``new``) may differ from the one it started with (``old``) only in
    `HARMLESS_CHANGES`, and only with ``allow_changes``; otherwise one UserError lists the
    differences. Settings ``old`` predates are read as `ADDED_SETTINGS` says it ran."""
    diff = differences(with_added_settings(old), new)
    harmful = [d for d in diff if d[0] not in HARMLESS_CHANGES]
    if harmful or (diff and not allow_changes):
        listing = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diff)
        hint = (
            "Resume without changing them, or start a new run."
            if harmful
            else "Pass --allow-changes to resume with them (they are harmless: "
            + ", ".join(HARMLESS_CHANGES)
            + ")."
        )
        raise UserError(
            f"the config differs from the run being resumed ({listing}). "
            + ("Those changes would make the finished part meaningless. " if harmful else "")
            + hint
        )
