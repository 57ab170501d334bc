"""Everything a verb checks before it writes anything: the space can build networks of the
configured sizes for this data, each phase fits in memory, the strategy can run (its storage
opens, its time budget buys steps), and the final network fits the training budget.

The memory checks come first and build nothing real (parameters are counted on the ``meta``
device, see `scinas.memory`): the time-budget checks after them time real steps.
A time-budget plan measured here is kept in ``s.plans`` and reused by the phase it plans.
"""

from __future__ import annotations

import itertools
import json

import numpy as np

from . import memory
from .data.augment_series import SERIES_AUGMENTS
from .data.split import take_count
from .errors import UserError
from .fit import plan_training, subset
from .inherit import train_section
from .run_context import SearchContext
from .spaces import SPACES, space_of
from .strategies import STRATEGIES, create_strategy
from .strategies.blackbox import BlackBoxSettings
from .strategies.oneshot_settings import OneShotSettings
from .symmetry import check_views


def check_search(s: SearchContext) -> None:
    """The search section can run on this data (UserError otherwise)."""
    sc = s.cfg.search
    SPACES.get(sc.space).check_dims(s.data.input_shape)
    SPACES.get(sc.space).check_search_sizes(sc, s.data.input_shape)
    check_search_memory(s)
    create_strategy(sc.strategy).preflight(s)


def check_train(s: SearchContext, arch=None) -> None:
    """The final network can be built and trained; ``arch`` None: the one the search will find
    (its space checks the sizes it can, and a stand-in architecture plans the time budget)."""
    t = train_section(s.cfg)  # the supernet's sizes with train.init=supernet
    space = space_of(arch) if arch is not None else SPACES.get(s.cfg.search.space)
    space.check_dims(s.data.input_shape)
    _check_augment(t.augment, s.data.input_shape)
    try:
        check_views(t.tta, s.data.input_shape)
    except ValueError as e:
        raise UserError(str(e)) from None
    space.check_network(arch, t, s.data.input_shape)
    check_train_memory(s, arch)
    if t.time_budget is not None:
        # A budget too small to train anything fails here, before anything is written. Before a
        # search the architecture is unknown: the space's stand-in (DARTS_V2 in the DARTS space)
        # is timed instead, and the real plan follows the search.
        n = len(subset(s.data.train.x, s.data.train.y, t.max_samples, s.cfg.seed)[0])
        if arch is not None:
            if "train" not in s.plans:
                s.plans["train"] = plan_training(s, arch, t, n)
        elif "train_stand_in" not in s.plans and (stand_in := space.planning_stand_in()):
            # kept, so that a compare times the stand-in once, not once per run
            s.plans["train_stand_in"] = plan_training(s, stand_in, t, n)


def _check_augment(augment: str, input_shape) -> None:
    """Refuse (UserError) an image augmentation for series, and the series one for images."""
    series = len(tuple(input_shape)) == 2
    if series and augment not in SERIES_AUGMENTS:
        raise UserError(
            f"train.augment={augment} is an image augmentation, and the data are series "
            f"({'×'.join(map(str, input_shape))}). For series choose train.augment=none (or "
            "default: no augmentation) or series (random shift, scaling and jitter)."
        )
    if not series and augment == "series":
        raise UserError(
            "train.augment=series is the augmentation of series (C×L), and the data are images "
            f"({'×'.join(map(str, input_shape))}): choose default, natural, rotation or none."
        )


# ----------------------------------------------------------------------------- memory


def check_search_memory(s: SearchContext) -> None:
    """The search fits in memory: a one-shot strategy's supernet step (with cell checkpointing
    where the space has it), or a black-box strategy's candidate networks at the search's
    sizes."""
    sc, data = s.cfg.search, s.data
    space = SPACES.get(sc.space)
    shape = tuple(data.input_shape)
    proxy = s.cfg.train.model_copy(  # the search's discrete networks (fit.low_fidelity_objective)
        update={
            "C": sc.C,
            "layers": sc.layers,
            "reductions": sc.reductions,
            "batch_size": sc.batch_size,
            "auxiliary": False,
            "drop_path_prob": 0.0,
        }
    )
    if STRATEGIES.get(sc.strategy).kind == "one-shot" and space.has_supernet:
        n = _n(len(data.train), sc.max_samples)
        if n < 2:
            raise UserError(
                f"the {sc.strategy} search splits its training samples in two (weights and "
                f"architecture), but the train split has {n}. Add training samples (or give "
                "fewer to x_val/x_test)."
            )
        own = sc.own
        portion = own.train_portion if isinstance(own, OneShotSettings) else 0.5
        arch_part = take_count(n, 1.0 - portion)
        # the supernet shares its skeleton (stem, reductions) with the discrete networks: one
        # of those, at the search's sizes, tells whether BatchNorm meets 1×1 maps
        _check_last_batch(s, [n - arch_part, arch_part], sc.batch_size, "search", space, proxy)
        checkpointing = "checkpoint_cells" in space.settings and sc.checkpoint_cells is not False
        need = memory.supernet_need(
            lambda: space.build_supernet(sc, shape, data.num_outputs),
            sc,
            what=f"the {sc.strategy} search's supernet ({sc.space} space)",
            input_shape=shape,
            checkpointing=checkpointing,
            n_samples=_n(len(data.train), sc.max_samples),
            sample_bytes=_sample_bytes(s),
            key=(type(space), sc.model_dump_json(), shape, data.num_outputs),
        )
        memory.check_fits(
            need,
            s.device,
            lambda: _knobs(
                "search",
                sc,
                lambda c: space.build_supernet(sc.model_copy(update={"C": c}), shape, 2),
            ),
        )
        return
    own = sc.own  # black-box candidates train on a share of the data; other searches on all
    share = own.eval_fraction if isinstance(own, BlackBoxSettings) else 1.0
    n = _n(int(round(len(data.train) * share)), sc.max_samples)
    _check_networks(s, space, None, proxy, "search", n, "a search candidate")


def check_train_memory(s: SearchContext, arch=None) -> None:
    """Training the final network fits in memory (``arch`` None: the largest of the space's
    stand-in or a few of its architectures, the search's result being unknown)."""
    t = train_section(s.cfg)
    space = space_of(arch) if arch is not None else SPACES.get(s.cfg.search.space)
    _check_networks(s, space, arch, t, "train", _n(len(s.data.train), t.max_samples), None)


def _check_networks(s: SearchContext, space, arch, section, name: str, n: int, what) -> None:
    data = s.data
    shape = tuple(data.input_shape)
    archs = [arch] if arch is not None else _candidates(s, space)
    if not archs:
        return
    needs = [
        (
            memory.network_need(
                lambda a=a: space.build_network(a, section, shape, data.num_outputs),
                section=section,
                name=name,
                what=what or _final(arch),
                input_shape=shape,
                n_samples=n,
                sample_bytes=_sample_bytes(s),
                key=_sizes_key(space, a, section, shape, data.num_outputs),
            ),
            a,
        )
        for a in archs
    ]
    if _last_batch_of_one(n, section.batch_size) and any(
        need.smallest_norm_map == 1 for need, _ in needs
    ):
        raise _batch_of_one(n, section.batch_size, name)
    need, worst = max(needs, key=lambda pair: pair[0].total)
    memory.check_fits(
        need,
        s.device,
        lambda: _knobs(
            name,
            section,
            lambda c: space.build_network(worst, section.model_copy(update={"C": c}), shape, 2),
        ),
    )


def _sizes_key(space, arch, section, shape, num_outputs) -> tuple | None:
    """What decides a discrete network's parameters and activations (`memory.measured`)."""
    to_dict = getattr(arch, "to_dict", None)
    if to_dict is None:
        return None
    arch_json = json.dumps(to_dict(), sort_keys=True)
    return (type(space), arch_json, section.model_dump_json(), shape, num_outputs)


def _last_batch_of_one(n: int, batch_size: int) -> bool:
    return n % batch_size == 1


def _check_last_batch(s: SearchContext, sizes, batch_size: int, name: str, space, section):
    """Refuse training parts whose last batch would hold one sample when the network's
    BatchNorm sees 1×1 maps (one value per channel cannot be normalised in training)."""
    n = next((m for m in sizes if _last_batch_of_one(m, batch_size)), None)
    if n is None:
        return
    shape = tuple(s.data.input_shape)
    for arch in _candidates(s, space):
        net = memory.on_meta(
            lambda a=arch: space.build_network(a, section, shape, s.data.num_outputs), "network"
        )
        if memory.meta_forward(net, 2, shape)[1] == 1:
            raise _batch_of_one(n, batch_size, name)


def _batch_of_one(n: int, batch_size: int, name: str) -> UserError:
    if n == 1:
        return UserError(
            f"the {name} phase trains on a single sample, and BatchNorm cannot train on one "
            "value per channel (the network's feature maps reach 1×1 on this input). Add "
            "training samples."
        )
    other = next(b for b in range(batch_size + 1, batch_size + n + 2) if n % b != 1)
    return UserError(
        f"the {name} phase's {n} training samples in batches of {batch_size} leave a last batch "
        "of one sample, and BatchNorm cannot train on one value per channel (the network's "
        f"feature maps reach 1×1 on this input). Use --set {name}.batch_size={other}"
        + (f" or --set {name}.max_samples={n - 1}" if n - 1 >= 4 else "")
        + "."
    )


def _final(arch) -> str:
    if arch is not None:
        return "the final network"
    return "the final network (sized as the largest architecture the search may find)"


def _candidates(s: SearchContext, space, at_most: int = 4) -> list:
    """Architectures that stand in for a search's unknown result: the space's planning stand-in,
    else all of its architectures when there are few, else a few seeded samples."""
    stand_in = space.planning_stand_in()
    if stand_in is not None:
        return [stand_in]
    decisions = space.decisions(s.cfg.search)
    choices = [list(ch) for _, ch in decisions.decisions]
    names = [name for name, _ in decisions.decisions]
    if int(np.prod([len(c) for c in choices], dtype=np.float64)) <= at_most:
        return [
            decisions.decode(dict(zip(names, combo, strict=True)))
            for combo in itertools.product(*choices)
        ]
    rng = np.random.RandomState(0)
    return [decisions.sample(rng) for _ in range(at_most)]


def _knobs(name: str, section, build_at) -> list[str]:
    """The sizes of a section that set its memory, with their values, for the refusal: C and
    layers only where they size the network (``build_at(C)`` builds it on ``meta`` at width C;
    the hand-designed networks have fixed widths and depths)."""
    knobs = [f"{name}.batch_size ({section.batch_size})"]
    count = [
        memory.parameter_count(memory.on_meta(lambda c=c: build_at(c), "the network"))
        for c in (section.C, section.C + 2)
    ]
    if count[0] != count[1]:
        knobs += [f"{name}.C ({section.C})", f"{name}.layers ({section.layers})"]
    return knobs


def _n(n: int, max_samples: int | None) -> int:
    return min(n, max_samples) if max_samples is not None else n


def _sample_bytes(s: SearchContext) -> int:
    x = s.data.train.x
    return int(x[0].numel() * x.element_size()) if len(x) else 0
