"""DARTS: bilevel gradient search of the cell, first order or second order (unrolled).

Per step: one architecture step on a batch of the architecture half of the training data (Adam on
the alphas), then one weight step on a batch of the weight half (SGD, cosine schedule, gradient
clipping), as in Liu et al. 2019. The second-order architecture gradient is

    ∇α L_val(w', α) − ξ ∇²_{α,w} L_train(w, α) · ∇w' L_val(w', α),   w' = w − ξ ∇w L_train(w, α)

(w' includes the optimiser's momentum and weight decay, ξ the current weight learning rate), with
the Hessian-vector product taken by central finite differences. Unlike the original code, nothing
is rebuilt: the virtual step is applied to the parameters in place and undone afterwards.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Literal

import torch
from pydantic import Field

from .. import parallel
from ..precision import full_precision, new_scaler
from ..rates import AUTO, LearningRate
from ..run_context import SearchContext
from .base import STRATEGIES
from .oneshot import OneShotStrategy
from .oneshot_settings import ArchSettings


def batch_loss(model, task, x, y) -> torch.Tensor:
    """The loss on (x, y); under DDP (`scinas.parallel`) this process's share of the loss of the
    global batch, whose summed gradients (`_grad`) are the global batch's."""
    return parallel.scale_loss(task.loss(model(x), task.encode_targets(y)), len(x))


@contextmanager
def frozen(params):
    """Temporarily stop recording gradients for ``params``.

    ``autograd.grad(loss, alphas)`` alone still lets every convolution's backward compute its
    weight gradient (the graph was recorded with weights requiring grad); freezing the weights
    before the forward pass skips that work and the tensors kept for it: measured on the benchmark
    supernet, a first-order architecture step is ~20% faster and peaks ~2 GB lower.
    """
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


def _alpha_grads(model, task, x, y):
    """Gradient of the loss on (x, y) w.r.t. the alphas only."""
    with frozen(model.weight_parameters()):
        loss = batch_loss(model, task, x, y)
        return loss, _grad(loss, model.arch_parameters())


def _grad(loss, params):
    """Gradients, with zeros for parameters the loss does not reach (e.g. the normal-cell alphas
    of a network too small to hold a normal cell); under DDP summed over the processes."""
    if not loss.requires_grad:  # e.g. GDAS sampled `none` on every edge: nothing reaches them
        grads = tuple(torch.zeros_like(p) for p in params)
    else:
        grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
    return parallel.all_reduce_(grads)


class Architect:
    """Updates the architecture parameters of a supernet."""

    def __init__(
        self,
        model,
        task,
        *,
        lr: float,
        weight_decay: float,
        order: int,
        hvp_r: float = 1e-2,
        penalty=None,
        follow: float | None = None,
    ):
        self.model, self.task, self.order, self.hvp_r = model, task, order, hvp_r
        # search.arch_lr_schedule=cosine: the alphas' rate is lr * eta / follow in a step whose
        # weight rate is eta (follow: the weights' peak rate), so it anneals with the weights'
        self.lr, self.follow = lr, follow
        # regularisers of the architecture loss (`scinas.strategies.regularisers.ArchPenalty`):
        # a callable returning a term on the alphas, or None
        self.penalty = penalty
        self.optimizer = torch.optim.Adam(
            model.arch_parameters(), lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay
        )
        # precision=fp16: the first-order step's loss scaler (`scinas.precision`; set by
        # `OneShotStrategy.trainer`, disabled otherwise)
        self.scaler = new_scaler("fp32", "cpu")

    def step(self, x_train, y_train, x_val, y_val, eta: float, w_optimizer) -> float:
        alphas = self.model.arch_parameters()
        if self.follow:
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr * eta / self.follow
        if self.order == 1:  # under the run's autocast (precision)
            with frozen(self.model.weight_parameters()):
                loss = batch_loss(self.model, self.task, x_val, y_val)
                grads = _grad(self.scaler.scale(loss), alphas)
            grads = self.add_penalty(grads, self.scaler.scale)
            for a, g in zip(alphas, grads, strict=False):
                a.grad = g
            self.scaler.step(self.optimizer)  # unscales; skips an fp16 overflow
            self.scaler.update()
        else:
            # float32 whatever the precision: the Hessian-vector product is a finite difference
            with full_precision(x_val.device.type):
                loss, grads = unrolled_arch_grads(
                    self.model,
                    self.task,
                    x_train,
                    y_train,
                    x_val,
                    y_val,
                    eta,
                    w_optimizer,
                    r=self.hvp_r,
                )
            grads = self.add_penalty(grads)
            for a, g in zip(alphas, grads, strict=False):
                a.grad = g
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return parallel.total(loss.detach()).item()

    def add_penalty(self, grads, scale=lambda term: term):
        """``grads`` plus the gradients of the regularisers (the same on every process: they
        depend on the alphas alone, so they are added after the data gradients are reduced)."""
        term = self.penalty() if self.penalty is not None else None
        if term is None:
            return grads
        extra = torch.autograd.grad(
            scale(term), self.model.arch_parameters(), allow_unused=True, materialize_grads=True
        )
        return [g + e for g, e in zip(grads, extra, strict=True)]


def _virtual_step_direction(weights, grads, w_optimizer) -> list[torch.Tensor]:
    """The SGD update direction momentum·buf + g + wd·w, as the weight optimiser would take it."""
    group = w_optimizer.param_groups[0]
    momentum, wd = group["momentum"], group["weight_decay"]
    out = []
    for w, g in zip(weights, grads, strict=False):
        d = g + wd * w.detach()
        buf = w_optimizer.state.get(w, {}).get("momentum_buffer")
        if buf is not None and momentum:
            d = d + momentum * buf
        out.append(d)
    return out


def unrolled_arch_grads(model, task, x_train, y_train, x_val, y_val, eta, w_optimizer, r=1e-2):
    """Second-order DARTS gradient of the validation loss w.r.t. the alphas.

    Returns the validation loss at w' and the gradients (one per alpha tensor). Weights are left
    exactly as they were (restored from a copy, not recomputed).
    """
    alphas = model.arch_parameters()
    weights = model.weight_parameters()
    backup = [w.detach().clone() for w in weights]

    # w' = w - eta * (momentum * buf + dL_train/dw + wd * w)
    with frozen(alphas):  # weight gradients only: keep nothing for the alphas' gradients
        grads_w = _grad(batch_loss(model, task, x_train, y_train), weights)
    direction = _virtual_step_direction(weights, grads_w, w_optimizer)
    with torch.no_grad():
        torch._foreach_add_(weights, direction, alpha=-eta)

    val_loss = batch_loss(model, task, x_val, y_val)
    grads = _grad(val_loss, alphas + weights)
    d_alpha, v = grads[: len(alphas)], grads[len(alphas) :]

    # Hessian-vector product ∇²_{α,w} L_train · v by central differences around w.
    eps = r / torch.sqrt(sum((g.double() ** 2).sum() for g in v)).item()
    with torch.no_grad():
        for w, b, vi in zip(weights, backup, v, strict=False):
            w.copy_(b).add_(vi, alpha=eps)
    _, g_pos = _alpha_grads(model, task, x_train, y_train)
    with torch.no_grad():
        for w, b, vi in zip(weights, backup, v, strict=False):
            w.copy_(b).add_(vi, alpha=-eps)
    _, g_neg = _alpha_grads(model, task, x_train, y_train)
    with torch.no_grad():
        for w, b in zip(weights, backup, strict=False):
            w.copy_(b)
    hessian_v = [(gp - gn) / (2 * eps) for gp, gn in zip(g_pos, g_neg, strict=False)]
    return val_loss.detach(), [da - eta * hv for da, hv in zip(d_alpha, hessian_v, strict=False)]


# The default DARTS is made robust against the paper's collapse to parameter-free cells: the
# architecture rate from its number of steps, DARTS-' auxiliary skip, an entropy term and
# β-DARTS' Beta-Decay (both ramped over the epochs). Evidence: benchmarks/results/robust_oneshot-*
# and nb201_oneshot-*; `--preset paper` restores the paper's DARTS (all of it off).
ROBUST_DEFAULTS = {
    "arch_lr": AUTO,
    "aux_skip": 1.0,
    "entropy_weight": 3.0,
    "entropy_schedule": "ramp",
    "beta_decay": 1.0,
    "arch_lr_schedule": "cosine",
}
PLAIN_DARTS = {
    "arch_lr": 3e-4,
    "aux_skip": 0.0,
    "entropy_weight": 0.0,
    "entropy_schedule": "constant",
    "beta_decay": 0.0,
    "arch_lr_schedule": "constant",
}


class DartsSettings(ArchSettings):
    arch_lr: LearningRate = Field(
        ROBUST_DEFAULTS["arch_lr"],
        description="alpha learning rate (Adam), or auto (default): as far as the alphas may "
        "travel over the search's architecture steps (scinas.lr_finder); the DARTS paper: 3e-4",
    )
    aux_skip: float = Field(
        ROBUST_DEFAULTS["aux_skip"],
        description="DARTS-: weight of an auxiliary skip connection on every stride-1 edge, "
        "times 1 - e/epochs in epoch e (from 0; 1/epochs in the last) (default 1, as DARTS-); "
        "0: off (plain DARTS)",
    )
    entropy_weight: float = Field(
        ROBUST_DEFAULTS["entropy_weight"],
        description="weight of the mean edge entropy in the architecture loss: pushes each edge "
        "toward one op, so short searches decide; 0: off (plain DARTS)",
    )
    entropy_schedule: Literal["constant", "ramp"] = Field(
        ROBUST_DEFAULTS["entropy_schedule"],
        description="the entropy weight over the search: ramp (default): growing linearly to "
        "entropy_weight at the last epoch (as beta_decay), so edges commit at the end; "
        "constant: entropy_weight from the first epoch",
    )
    beta_decay: float = Field(
        ROBUST_DEFAULTS["beta_decay"],
        description="beta-DARTS: weight of the Beta-Decay term (mean logsumexp of each edge's "
        "alphas), ramped linearly to this value over the epochs (default 1, as beta-DARTS); "
        "0: off (plain DARTS)",
    )
    arch_lr_schedule: Literal["constant", "cosine"] = Field(
        ROBUST_DEFAULTS["arch_lr_schedule"],
        description="the alpha learning rate over the search: cosine (default): scaled by the "
        "weights' rate over its peak (search.lr), so the alphas settle as the weights do; with "
        "arch_lr=auto its peak is raised so the alphas may travel as far; constant: DARTS'",
    )
    order: Literal[1, 2] = Field(1, description="1: first-order DARTS, 2: second-order (unrolled)")
    hvp_r: float = Field(
        0.01, gt=0, description="second order: finite-difference step r/||v|| (DARTS: 0.01)"
    )

    @property
    def second_order(self) -> bool:
        return self.order == 2


class GradientStrategy(OneShotStrategy):
    """A strategy whose alphas follow the gradient of the architecture loss (Adam, `Architect`),
    the supernet relaxing each edge's op choice as ``sampling`` says; the regularisers the
    settings ask for join the architecture loss."""

    sampling = "softmax"

    def architect_options(self, ctx: SearchContext) -> dict:
        """`Architect` keywords beyond the shared ones (DARTS: its order)."""
        return {"order": 1}

    def penalty_options(self, ctx: SearchContext) -> dict:
        """`scinas.strategies.regularisers.ArchPenalty` keywords of this strategy's own terms."""
        return {}

    def configure(self, model, ctx: SearchContext) -> None:
        s = ctx.cfg.search
        model.sampling = self.sampling
        self.architect = Architect(
            model,
            ctx.task,
            lr=s.arch_lr,
            weight_decay=s.arch_weight_decay,
            penalty=self.arch_penalty(model, ctx, **self.penalty_options(ctx)),
            follow=s.lr if s.arch_lr_schedule == "cosine" else None,
            **self.architect_options(ctx),
        )

    def arch_step(self, model, xt, yt, xv, yv, lr, w_optimizer) -> float:
        return self.architect.step(xt, yt, xv, yv, lr, w_optimizer)


@STRATEGIES.decorator("darts")
class DartsStrategy(GradientStrategy):
    """Differentiable architecture search (first or second order, `search.order`): every op of
    every edge runs, weighted by the softmax of its alphas."""

    name = "darts"
    description = (
        "DARTS: a softmax mixture of every op on every edge, first or second order (search.order)"
    )
    Settings = DartsSettings
    bn_from_training = True  # every op sees every batch
    derive_kinds = ("top", "ranks", "threshold", "supernet")

    def describe(self, ctx: SearchContext) -> str:
        return f"DARTS order {ctx.cfg.search.order}"

    def architect_options(self, ctx: SearchContext) -> dict:
        return {"order": ctx.cfg.search.order, "hvp_r": ctx.cfg.search.hvp_r}
