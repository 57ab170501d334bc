"""scinas: neural architecture search on your own image-like data.

The Python API mirrors the CLI verbs::

    import scinas
    cfg = scinas.build_config(preset="tiny", data__dataset="digits")
    results = scinas.run(cfg, out="runs/digits")
    print(results["test"]["accuracy"], results["genotype"])

    # another strategy / space: build_config(..., search__strategy="gdas", search__space="nb201")
    # rank a strategy on NAS-Bench-201: scinas.bench_nb201("evolution", budget=100, seeds=10,
    #                                                      table="nb201_accuracies.npz", out=...)
"""

from __future__ import annotations

import sys as _sys

if _sys.argv and _sys.argv[0].replace("\\", "/").rsplit("/", 1)[-1] in ("scinas", "-m"):
    # the CLI (`scinas`, `python -m scinas`): a stop signal during the slow imports ends it
    # with the interrupt exit code rather than a silent death
    from .signals import install_startup

    install_startup()

from . import progress  # noqa: E402
from .bench import run_nb201 as bench_nb201  # noqa: E402
from .config import Config, build_config  # noqa: E402
from .errors import TrainingDiverged, UserError  # noqa: E402
from .export import export, load  # noqa: E402
from .pipeline import evaluate, run, search, train  # noqa: E402
from .spaces import SPACES, load_genotype  # noqa: E402
from .spaces.darts.genotype import Genotype  # noqa: E402
from .strategies import STRATEGIES  # noqa: E402
from .version import __version__  # noqa: E402

__all__ = [
    "SPACES",
    "STRATEGIES",
    "__version__",
    "Config",
    "bench_nb201",
    "Genotype",
    "TrainingDiverged",
    "UserError",
    "build_config",
    "evaluate",
    "export",
    "load",
    "load_genotype",
    "progress",
    "run",
    "search",
    "train",
]
