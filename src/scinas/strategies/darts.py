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

import time
from contextlib import contextmanager

import torch
from torch import nn

from ..data.split import stratified_split
from ..supernet import Supernet
from ..train import Batches, check_finite, cosine_sgd, evaluate
from .base import STRATEGIES, SearchContext, SearchResult


def batch_loss(model, task, x, y) -> torch.Tensor:
    return task.loss(model(x), task.encode_targets(y))


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
    of a network too small to hold a normal cell)."""
    return torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)


class Architect:
    """Updates the architecture parameters of a supernet."""

    def __init__(
        self,
        model: Supernet,
        task,
        *,
        lr: float,
        weight_decay: float,
        order: int,
        hvp_r: float = 1e-2,
    ):
        self.model, self.task, self.order, self.hvp_r = model, task, order, hvp_r
        self.optimizer = torch.optim.Adam(
            model.arch_parameters(), lr=lr, betas=(0.5, 0.999), weight_decay=weight_decay
        )

    def step(self, x_train, y_train, x_val, y_val, eta: float, w_optimizer) -> float:
        alphas = self.model.arch_parameters()
        if self.order == 1:
            loss, grads = _alpha_grads(self.model, self.task, x_val, y_val)
        else:
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
        for a, g in zip(alphas, grads, strict=False):
            a.grad = g
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()


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
    grads_w = torch.autograd.grad(batch_loss(model, task, x_train, y_train), weights)
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


# Activation memory grows with batch·C·H·W·cells; at the DARTS benchmark setting (64·16·32·32·8)
# a step peaks near 6 GB without checkpointing and 2.6 GB with it (benchmarks/search_step.py).
# "auto" turns checkpointing on from half that size up, where the memory starts to matter more
# than the ~30% of extra time.
CHECKPOINT_FROM = 64 * 16 * 32 * 32 * 8 // 2


def use_checkpointing(s, input_shape) -> bool:
    if s.checkpoint_cells is not None:
        return s.checkpoint_cells
    _, H, W = input_shape
    return s.batch_size * s.C * H * W * s.layers >= CHECKPOINT_FROM


def build_supernet(ctx: SearchContext) -> Supernet:
    s, data = ctx.cfg.search, ctx.data
    C_in, H, W = data.input_shape
    return Supernet(
        C_in,
        data.num_outputs,
        (H, W),
        C=s.C,
        layers=s.layers,
        op_names=tuple(s.ops),
        steps=s.nodes,
        multiplier=s.nodes,
        reductions=s.reductions,
        checkpoint_cells=use_checkpointing(s, data.input_shape),
    )


def search_halves(ctx: SearchContext, seed: int):
    """DARTS' split of the training data: weights train on one half, the alphas on the other."""
    s, train = ctx.cfg.search, ctx.data.train
    x, y = train.x, train.y
    if s.max_samples is not None and s.max_samples < len(x):
        _, keep = stratified_split(y.numpy(), s.max_samples / len(x), seed)
        keep = torch.as_tensor(keep)
        x, y = x[keep], y[keep]
    w_idx, a_idx = stratified_split(y.numpy(), 1.0 - s.train_portion, seed + 1)
    w_idx, a_idx = torch.as_tensor(w_idx), torch.as_tensor(a_idx)
    return (x[w_idx], y[w_idx]), (x[a_idx], y[a_idx])


@STRATEGIES.decorator("darts")
class DartsStrategy:
    """Differentiable architecture search (first or second order, `search.order`)."""

    def search(self, ctx: SearchContext) -> SearchResult:
        s, cfg, task = ctx.cfg.search, ctx.cfg, ctx.task
        t_start = time.perf_counter()
        torch.manual_seed(cfg.seed)
        model = build_supernet(ctx).to(ctx.device)
        if ctx.channels_last:
            model = model.to(memory_format=torch.channels_last)
        mean = torch.tensor(ctx.data.mean, dtype=torch.float32)
        std = torch.tensor(ctx.data.std, dtype=torch.float32)
        (xw, yw), (xa, ya) = search_halves(ctx, cfg.seed)

        def batches(x, y, shuffle, seed):
            gen = torch.Generator().manual_seed(seed) if shuffle else None
            return Batches(
                x,
                y,
                mean,
                std,
                s.batch_size,
                ctx.device,
                ctx.channels_last,
                shuffle=shuffle,
                generator=gen,
            )

        w_batches = batches(xw, yw, True, cfg.seed + 11)
        a_batches = batches(xa, ya, True, cfg.seed + 12)
        val_batches = batches(ctx.data.val.x, ctx.data.val.y, False, 0)

        w_optimizer, scheduler = cosine_sgd(
            model.weight_parameters(), s.lr, s.lr_min, s.momentum, s.weight_decay, s.epochs
        )
        architect = Architect(
            model,
            task,
            lr=s.arch_lr,
            weight_decay=s.arch_weight_decay,
            order=s.order,
            hvp_r=s.hvp_r,
        )
        ctx.reporter.log(
            f"search: DARTS order {s.order}, {s.epochs} epochs, supernet C={s.C} layers={s.layers} "
            f"nodes={s.nodes}, {len(s.ops)} ops, {len(xw)}+{len(xa)} images (weights+arch), "
            f"cell checkpointing {'on' if model.checkpoint_cells else 'off'}"
        )
        history = []
        val_metrics: dict = {}
        for epoch in range(s.epochs):
            t0 = time.perf_counter()
            lr = w_optimizer.param_groups[0]["lr"]
            update_arch = epoch >= s.warmup_epochs
            model.train()
            outs, tgts, arch_losses = [], [], []
            steps = zip(w_batches, a_batches, strict=False)
            steps = ctx.reporter.track(
                steps, min(len(w_batches), len(a_batches)), f"search {epoch + 1}/{s.epochs}"
            )
            for step, ((xt, yt), (xv, yv)) in enumerate(steps):
                where = f"search epoch {epoch + 1}, step {step + 1}"
                if update_arch:
                    for a in model.arch_parameters():
                        a.requires_grad_(True)
                    arch_loss = architect.step(xt, yt, xv, yv, lr, w_optimizer)
                    check_finite(torch.tensor(arch_loss), where, "search.arch_lr", s.arch_lr)
                    arch_losses.append(arch_loss)
                # Weight step; the alphas are constants here (no grads, smaller graph).
                for a in model.arch_parameters():
                    a.requires_grad_(False)
                out = model(xt)
                loss = task.loss(out, task.encode_targets(yt))
                check_finite(loss, where, "search.lr", lr)
                w_optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.weight_parameters(), s.grad_clip)
                w_optimizer.step()
                outs.append(out.detach().float().cpu())
                tgts.append(yt.cpu())
            for a in model.arch_parameters():
                a.requires_grad_(True)
            scheduler.step()
            train_metrics = task.metrics(torch.cat(outs), torch.cat(tgts))
            val_metrics = evaluate(model, task, val_batches)
            genotype = model.genotype()
            w_normal, w_reduce = (w.detach().cpu() for w in model.edge_weights())
            event = {
                "event": "search_epoch",
                "epoch": epoch + 1,
                "lr": lr,
                "train": train_metrics,
                "val": val_metrics,
                "arch_loss": sum(arch_losses) / len(arch_losses) if arch_losses else None,
                "seconds": time.perf_counter() - t0,
            }
            history.append(event)
            if ctx.run is not None:
                ctx.run.log_event(event)
                ctx.run.log_arch_weights(
                    epoch + 1,
                    model.op_names,
                    w_normal,
                    w_reduce,
                    genotype,
                    model.alpha_normal.detach().cpu(),
                    model.alpha_reduce.detach().cpu(),
                )
            pm = task.primary_metric
            ctx.reporter.log(
                f"search epoch {epoch + 1}/{s.epochs}: train loss {train_metrics['loss']:.4f} "
                f"{pm} {train_metrics[pm]:.4f} | val loss {val_metrics['loss']:.4f} "
                f"{pm} {val_metrics[pm]:.4f} | {event['seconds']:.1f}s"
            )
        return SearchResult(
            genotype=model.genotype(),
            history=history,
            model=model,
            val_metrics=val_metrics,
            seconds=time.perf_counter() - t_start,
        )
