"""The methods of `scinas compare`: each one registered with the config it runs with, and the order
a seed's runs take."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .config import Config
from .registry import Registry


def _with(cfg: Config, **changes) -> Config:
    tree = cfg.model_dump()
    for key, value in changes.items():
        node = tree
        *path, last = key.split("__")
        for part in path:
            node = node[part]
        node[last] = value
    return Config.model_validate(tree)


# ----------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    """A method of `scinas compare`.

    ``kind``: "search" (a `scinas run` of ``configure(cfg)``), "baseline" (a `scinas train` of the
    named architecture), "supernet" (the supernet of this seed's ``darts`` run, tested as it
    is) or "features" (no network: fixed features and a linear model, `scinas.minirocket`).
    ``configure(cfg) -> Config`` gives the config the method runs with (its seed is set per
    run); with a budget, a search's config carries its search share in
    ``search.time_budget``."""

    name: str
    description: str
    kind: str
    configure: Callable[[Config], Config]
    strategy: str | None = None  # the search strategy it runs: its settings may be given


COMPARE_METHODS: Registry[Method] = Registry("compare method")


def _searched(cfg: Config) -> Config:
    """A search method's share of the budget: ``search.time_budget``. The retraining gets the
    time left, planned after the search; its nominal share in ``train.time_budget`` lets the
    checks before the compare refuse a budget too small for the space's stand-in network."""
    b, share = cfg.compare.budget, cfg.compare.search_share
    if b is None:
        return cfg
    return _with(cfg, search__time_budget=b * share, train__time_budget=b * (1 - share))


def _darts(cfg: Config) -> Config:
    return _searched(_with(cfg, search__strategy="darts"))


def _random(cfg: Config) -> Config:
    # without a budget, the search gets the same wall-clock time as the seed's DARTS search
    return _searched(_with(cfg, search__strategy="random", search__budget=10_000))


def _is_series(cfg: Config) -> bool:
    """Whether the config's data are series (samples C×L): read once per config."""
    from .context import load_data

    return len(load_data(cfg).input_shape) == 2


def _recommended(cfg: Config) -> Config:
    """`scinas.recommend`'s recipe, with its own share of the budget for searching."""
    from .recommend import recommended

    return recommended(cfg, series=_is_series(cfg))


def _hpo(cfg: Config) -> Config:
    """The recommended search's start network with only its training recipe searched."""
    from .recommend import recommended

    return recommended(cfg, architecture=False, series=_is_series(cfg))


def _model_search(cfg: Config) -> Config:
    """The lineage from your own network (``compare.model``): its kernels grown, its
    convolutions widened and its recipe changed, at the search share of the budget."""
    if cfg.compare.model is None:
        from .errors import UserError

        raise UserError(
            "the method model_search searches your own network: give --model FILE.py:FUNCTION."
        )
    return _searched(
        _with(
            cfg,
            search__strategy="lineage",
            search__space="baseline",
            search__start_from=[cfg.compare.model],
        )
    )


def _receptive(cfg: Config) -> Config:
    """The receptive-field search over the data's backbone (resnet1d for series, resnet_tiny
    for images; `scinas.strategies.receptive`) at the search share of the budget."""
    from pydantic import ValidationError

    from .strategies import STRATEGIES

    tree = cfg.model_dump()
    own = STRATEGIES.get("receptive").Settings
    for key in [k for k in tree["search"] if k in own.model_fields]:
        try:  # a shared setting (epochs, lr) carries over unless it cannot (arch_lr=auto)
            own.model_validate({key: tree["search"][key]})
        except ValidationError:
            del tree["search"][key]
    tree["search"].update(strategy="receptive", space="baseline")
    return _searched(Config.model_validate(tree))


def _baseline(cfg: Config) -> Config:
    return cfg if cfg.compare.budget is None else _with(cfg, train__time_budget=cfg.compare.budget)


for _m in (
    Method(
        "scinas",
        "the recommended search for this data and budget",
        "search",
        _recommended,
        "lineage",
    ),
    Method(
        "hpo",
        "the recommended search's start network, its training recipe searched the same way",
        "search",
        _hpo,
        "lineage",
    ),
    Method("darts", "DARTS, its derived cell retrained from scratch", "search", _darts, "darts"),
    Method(
        "darts_supernet", "the DARTS run's trained supernet, as it is", "supernet", _darts, "darts"
    ),
    Method(
        "random", "random search at low fidelity, its best retrained", "search", _random, "random"
    ),
    Method("resnet10", "ResNet-10, hand-designed", "baseline", _baseline),
    Method("resnet18", "ResNet-18, hand-designed", "baseline", _baseline),
    Method("resnet_tiny", "a 78k-parameter ResNet, hand-designed", "baseline", _baseline),
    Method("model", "your own network (--model FILE.py:FUNCTION)", "baseline", _baseline),
    Method(
        "model_search",
        "your own network, its kernel sizes and training recipe searched by the lineage",
        "search",
        _model_search,
        "lineage",
    ),
    Method(
        "receptive",
        "resnet1d's (series) or resnet_tiny's (images) kernel sizes and dilations searched in "
        "one training, the network chosen retrained",
        "search",
        _receptive,
        "receptive",
    ),
    Method(
        "resnet1d",
        "Wang et al. 2017's ResNet for series (64/128/128 channels, kernels 8, 5, 3)",
        "baseline",
        _baseline,
    ),
    Method(
        "minirocket",
        "MiniRocket features and a ridge model (series; no network; needs scinas[series])",
        "features",
        lambda cfg: cfg,
    ),
):
    COMPARE_METHODS.register(_m.name, _m)

METHODS = tuple(COMPARE_METHODS.names())
# resnet1d is a series network: on images its 8×8 kernels at full resolution cost about a
# hundred times resnet_tiny's steps, so it and the search over its receptive fields run only
# when named; model needs --model, minirocket series and an optional extra
DEFAULT_METHODS = tuple(
    m for m in METHODS if m not in ("resnet1d", "model", "model_search", "receptive", "minirocket")
)


def baseline_arch(name: str, cfg: Config):
    """The architecture a baseline method trains: the named network, or for ``model`` the
    user's own (``compare.model``; runnable only once the user named it, `user_model.trust`)."""
    from .errors import UserError
    from .spaces import load_genotype
    from .spaces.user_model import arch_of

    if name != "model":
        return load_genotype(name)
    if cfg.compare.model is None:
        raise UserError(
            "the method model is your own network: give --model FILE.py:FUNCTION (a Python file "
            "and the function in it that builds the network)."
        )
    return arch_of(cfg.compare.model)


def _runs_of(methods: tuple[str, ...], budget: float | None) -> list[str]:
    """The runs to do per seed, in order. darts runs first when a method needs it: its supernet
    is darts_supernet, and without a budget random search gets its search time; when darts is
    not itself compared it still runs (a helper run, not in the table)."""
    order = [m for m in METHODS if m in methods and m != "darts"]
    if (
        "darts" in methods
        or "darts_supernet" in methods
        or (budget is None and "random" in methods)
    ):
        order.insert(0, "darts")
    return order
