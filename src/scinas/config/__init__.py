"""Run configuration: pydantic models at the user boundary, presets, files and ``--set`` overrides.

Precedence, lowest first: field defaults < preset < config file < ``--set key=value`` < explicit
CLI options (``--data``, ``--seed``, ...). Every unknown key or bad value is a UserError naming
the key, with the closest valid key suggested.
"""

from __future__ import annotations

from .load import (
    HARMLESS_CHANGES,
    build_config,
    check_resumable,
    check_settings_apply,
    config_to_dict,
    parse_set,
    read_config_file,
)
from .presets import PRESETS
from .schema import (
    CompareConfig,
    Config,
    DataConfig,
    SearchConfig,
    TrainConfig,
)
from .values import strategy_keys

__all__ = [
    "HARMLESS_CHANGES",
    "PRESETS",
    "CompareConfig",
    "Config",
    "DataConfig",
    "SearchConfig",
    "TrainConfig",
    "build_config",
    "check_resumable",
    "check_settings_apply",
    "config_to_dict",
    "parse_set",
    "read_config_file",
    "strategy_keys",
]
