"""A lineage search's state on disk (`scinas.strategies.lineage`): its checkpoint after each
round, the checkpoint read back on ``--resume``, and the winner's weights for the final
training."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from .. import parallel
from ..checkpoint import Checkpointer, load_fitting
from ..errors import UserError
from ..rundir import atomic_write
from ..train import make_optimizer
from .branch import Branch, Progress, Recipe, opt_args
from .fidelity import WINNER


def _weights(net: torch.nn.Module) -> dict:
    net = getattr(net, "_orig_mod", net)
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


def save(lineage, ckpt: Checkpointer, inc: Branch, p: Progress, seconds: float) -> None:
    """A checkpoint after a finished round: a resumed lineage goes on from the next one."""
    if not ckpt.enabled or not parallel.leader():
        return
    ckpt.save(
        {
            "arch": inc.arch.to_dict(),
            "recipe": asdict(inc.recipe),
            "net": _weights(inc.net),
            "optimizer": inc.optimizer.state_dict(),
            "steps": inc.steps,
            "progress": {**asdict(p), "tried": sorted(p.tried)},
            "rng": lineage.rng.bit_generator.state,
            "events": lineage.events,
            "seconds": seconds,
        }
    )


def restore(lineage, state: dict, folder) -> tuple[Branch, Progress]:
    """The incumbent and progress of a checkpoint ``state`` read from ``folder``."""
    lineage.rng.bit_generator.state = state["rng"]
    lineage.events = list(state["events"])
    arch = lineage.space.from_dict(state["arch"], "the lineage's checkpoint")
    recipe = Recipe(**state["recipe"])
    net = lineage.build(arch)
    load_fitting(getattr(net, "_orig_mod", net), state["net"], folder)
    opt = make_optimizer(net.parameters(), **opt_args(recipe))
    opt.load_state_dict(state["optimizer"])
    p = Progress(**state["progress"])
    p.tried = set(p.tried)
    return Branch(arch, net, recipe, opt, state["steps"]), p


def keep(lineage, inc: Branch) -> None:
    """The incumbent's weights as the winner: the final training starts from them."""
    run = lineage.ctx.run
    if run is None or not parallel.leader():
        return
    weights = _weights(inc.net)
    atomic_write(run.path / WINNER, lambda f: torch.save(weights, f))


def start(ctx):
    """The lineage's start architecture: search.start_from, or the space's stand-in."""
    from ..spaces import SPACES, load_genotype

    s = ctx.cfg.search
    space = SPACES.get(s.space)
    if not s.start_from:
        stand_in = space.planning_stand_in()
        if stand_in is None:  # a space without one: a seeded draw of its own
            stand_in = space.decisions(s).sample(np.random.RandomState(ctx.cfg.seed))
        return stand_in
    if len(s.start_from) != 1:
        raise UserError(
            f"search.start_from names {len(s.start_from)} architectures; the lineage starts "
            "from one."
        )
    arch = load_genotype(s.start_from[0])
    if arch.space != s.space:
        raise UserError(
            f"search.start_from: {s.start_from[0]} is an architecture of the {arch.space} space, "
            f"but the search runs on the {s.space} space."
        )
    return arch
