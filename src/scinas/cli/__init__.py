"""The `scinas` command line: thin wrappers over the Python API in `scinas.pipeline`, one module
per verb group, sharing the options and helpers of `common`."""

from __future__ import annotations

# registers the verbs on the app, in the order --help lists them
from . import runs, studies, listings  # noqa: F401, I001  # isort: skip
from .common import app
from .listings import _searches, spaces_text, strategies_text

__all__ = ["_searches", "app", "main", "spaces_text", "strategies_text"]


def main() -> None:
    app(prog_name="scinas")
