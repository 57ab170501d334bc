"""The ``receptive`` strategy: the kernel size and dilation of every convolution of one network,
searched in one training (DASH-like; Shen et al. 2022).

The network (``search.start_from``: a hand-designed one such as ``resnet1d``, or your own
``--model``) keeps its layers; each searchable convolution (`scinas.spaces.receptive.sites`)
becomes an `AggregatedConv` over the kernel sizes and dilations given, whose choices share one
weight and are mixed by a softmax over architecture logits, at the cost of one convolution of the
largest kernel per dilation. The weights train on part of the training split and the logits on
the rest (first-order DARTS, alternating steps); at the end each convolution takes its most
likely choice, and the network so chosen is trained from scratch by the run's final training.

Hand-designed backbones often have the wrong receptive field for a task: on NAS-Bench-360's ten
tasks, DASH (searching only each convolution's kernel and dilation this way) had the best
automated result on seven, and on six its search and retraining took under twice the backbone's
training (Shen et al. 2022). DASH mixes the dilations too in one convolution, in the Fourier
domain; here each dilation is one convolution in the signal domain, which costs the number of
dilations times a convolution of the largest kernel.
"""

from __future__ import annotations

import math
import time

import torch
from pydantic import Field, field_validator

from ..bounds import MAX_EPOCHS
from ..checkpoint import Checkpointer, load_fitting
from ..data.split import stratified_split
from ..errors import UserError
from ..evaluation import predict
from ..fit import build_network, subset, train_augment
from ..run_context import SearchContext
from ..signals import STOP, Interrupted
from ..spaces.receptive import MAX_DILATION, MAX_KERNEL, AggregatedConv, aggregate, check_choices
from ..train import model_output
from .base import STRATEGIES, SearchResult, SearchStrategy, StrategySettings

# the choices when none are given: series take longer kernels and dilations than images
DEFAULT_KERNELS = {1: [3, 5, 7, 9, 11, 15], 2: [3, 5, 7]}
DEFAULT_DILATIONS = {1: [1, 2, 4, 8], 2: [1, 2]}
START = {1: "resnet1d", 2: "resnet_tiny"}  # the start network when none is given


class ReceptiveSettings(StrategySettings):
    start_from: list[str] | None = Field(
        None,
        description="the network whose convolutions are searched, an architecture of the "
        "baseline space (resnet1d, resnet_tiny, ... or your own network: --model); None: "
        "resnet1d for series, resnet_tiny for images",
    )
    receptive_kernels: list[int] | None = Field(
        None,
        description=f"kernel sizes each convolution may take (odd, 3 to {MAX_KERNEL}); None: "
        "3, 5, 7, 9, 11, 15 for series, 3, 5, 7 for images",
    )
    receptive_dilations: list[int] | None = Field(
        None,
        description=f"dilations each convolution may take (1 to {MAX_DILATION}); None: 1, 2, "
        "4, 8 for series, 1, 2 for images",
    )
    epochs: int = Field(10, ge=1, le=MAX_EPOCHS, description="search epochs")
    lr: float = Field(0.05, gt=0, le=10, description="the weights' SGD rate (cosine schedule)")
    weight_decay: float = Field(5e-4, ge=0, le=1, description="the weights' L2 weight decay")
    arch_lr: float = Field(
        0.01, gt=0, le=10, description="Adam's rate for the logits over each layer's choices"
    )
    train_portion: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="share of the training split the weights train on; the logits train on "
        "the rest",
    )

    @field_validator("receptive_kernels", "receptive_dilations")
    @classmethod
    def _choices(cls, v, info):
        if v is None:
            return v
        if info.field_name == "receptive_kernels":
            check_choices(v, [1])
        else:
            check_choices([3], v)
        return v


class ReceptiveStrategy(SearchStrategy):
    name = "receptive"
    kind = "receptive-field"
    default_space = "baseline"  # it searches one network's convolutions, not a cell
    description = (
        "the kernel size and dilation of every convolution of one network, in one training "
        "(aggregated kernels, DASH)"
    )
    Settings = ReceptiveSettings

    @classmethod
    def check_search(cls, s, space) -> None:
        super().check_search(s, space)
        if not space.has_receptive_fields:
            raise ValueError(
                "strategy receptive searches the convolutions of one network of the baseline "
                f"space (resnet1d, resnet_tiny, ... or your own: --model), not of the {space.name} "
                "space: set search.space=baseline or leave it out"
            )

    def preflight(self, ctx: SearchContext) -> None:
        arch = _start(ctx)
        d = ctx.data
        with torch.device("meta"):
            net = build_network(arch, ctx.cfg.train, d.input_shape, d.num_outputs)
        from ..spaces.receptive import sites

        if not sites(net):
            raise UserError(
                f"{arch} has no convolution whose receptive field can be searched (1-D or 2-D, "
                "one kernel size of 2 or more, 'same' padding); give another search.start_from."
            )
        dim = len(d.input_shape) - 1
        kernels = ctx.cfg.search.receptive_kernels or DEFAULT_KERNELS[dim]
        length = min(d.input_shape[1:])
        if min(kernels) > length:
            what = "series are" if dim == 1 else "images are"
            unit = "steps long" if dim == 1 else "pixels wide"
            raise UserError(
                f"the {what} {length} {unit}, shorter than the smallest kernel searched "
                f"({min(kernels)}): give search.receptive_kernels with a kernel of at most "
                f"{length}, or longer inputs."
            )

    def search(self, ctx: SearchContext) -> SearchResult:
        return ReceptiveSearch(ctx).run()


STRATEGIES.register("receptive", ReceptiveStrategy)


def _start(ctx: SearchContext):
    from ..spaces import load_genotype, space_of

    s, d = ctx.cfg.search, ctx.data
    name = s.start_from[0] if s.start_from else START[len(d.input_shape) - 1]
    if s.start_from and len(s.start_from) != 1:
        raise UserError(
            f"search.start_from names {len(s.start_from)} architectures; the receptive-field "
            "search takes one."
        )
    arch = load_genotype(name)
    if not space_of(arch).has_receptive_fields:
        raise UserError(
            f"search.start_from: {name} is an architecture of the {arch.space} space; the "
            "receptive-field search takes one of the baseline space."
        )
    return arch


class ReceptiveSearch:
    """One receptive-field search (`ReceptiveStrategy`)."""

    def __init__(self, ctx: SearchContext):
        self.ctx, self.cfg, self.s = ctx, ctx.cfg, ctx.cfg.search
        d = ctx.data
        dim = len(d.input_shape) - 1
        self.kernels = self.s.receptive_kernels or DEFAULT_KERNELS[dim]
        self.dilations = self.s.receptive_dilations or DEFAULT_DILATIONS[dim]
        x, y = subset(d.train.x, d.train.y, self.s.max_samples, self.cfg.seed)
        rest, taken = stratified_split(y.numpy(), 1 - self.s.train_portion, self.cfg.seed)
        rest, taken = torch.as_tensor(rest), torch.as_tensor(taken)
        if len(rest) == 0 or len(taken) == 0:
            raise UserError(
                f"{len(x)} training samples cannot be split for the receptive-field search "
                f"(search.train_portion={self.s.train_portion}): give more data."
            )
        self.weights_part = (x[rest], y[rest])
        self.logits_part = (x[taken], y[taken])
        self.val = ctx.place.batches(d.val.x, d.val.y, 256)
        self.hw = tuple(d.input_shape[1:])
        self.events: list[dict] = []

    def log_event(self, event: dict) -> None:
        self.events.append(event)
        if self.ctx.run is not None:
            self.ctx.run.log_event(event)

    def run(self) -> SearchResult:
        ctx, s, cfg, t0 = self.ctx, self.s, self.cfg, time.perf_counter()
        arch = _start(ctx)
        d = ctx.data
        torch.manual_seed(cfg.seed)
        net = build_network(arch, cfg.train, d.input_shape, d.num_outputs)
        found = aggregate(net, self.kernels, self.dilations, d.input_shape)
        mixed: list[AggregatedConv] = [net.get_submodule(site.path) for site in found]
        narrowed = [m for m in mixed if not bool(m.allowed.all())]
        if narrowed:
            ctx.reporter.log(
                f"search: {len(narrowed)} of {len(mixed)} convolutions see inputs of "
                f"{min(m.length for m in narrowed)} to {max(m.length for m in narrowed)} steps "
                "and leave out the choices wider than that"
            )
        core = net  # its state, whatever place.module wraps it in
        net = ctx.place.module(net)
        logits = [m.alpha for m in mixed]
        ids = {id(p) for p in logits}
        weights = [p for p in net.parameters() if id(p) not in ids]
        w_opt = torch.optim.SGD(weights, lr=s.lr, momentum=0.9, weight_decay=s.weight_decay)
        a_opt = torch.optim.Adam(logits, lr=s.arch_lr, betas=(0.5, 0.999), weight_decay=1e-3)
        ctx.reporter.log(
            f"search: receptive fields of {len(found)} convolutions of {arch}: kernels "
            f"{', '.join(map(str, self.kernels))}, dilations "
            f"{', '.join(map(str, self.dilations))}"
        )
        ckpt = Checkpointer(ctx.run, "search", ctx.reporter)
        state = ckpt.load() if ctx.resume and ckpt.enabled else None
        if ctx.resume and ckpt.enabled and state is None:
            ckpt.truncate_logs({"metrics.jsonl": 0})
        first, spent = 0, 0.0
        if state is not None:
            load_fitting(core, state["net"], ckpt.folder)
            w_opt.load_state_dict(state["w_opt"])
            a_opt.load_state_dict(state["a_opt"])
            self.events = list(state["events"])
            first, spent = state["epoch"], state["seconds"]
            ctx.reporter.log(f"receptive: resuming after epoch {first}")
        deadline = None if s.time_budget is None else t0 + s.time_budget - spent
        metrics = None
        for epoch in range(first, s.epochs):
            started = time.perf_counter()
            lr = s.lr * 0.5 * (1 + math.cos(math.pi * epoch / s.epochs))
            for g in w_opt.param_groups:
                g["lr"] = lr
            loss, steps, timed_out = self._epoch(net, w_opt, a_opt, epoch, deadline)
            if steps == 0:
                break
            metrics = ctx.task.metrics(*predict(net, self.val))
            choices = {
                site.path: dict(zip(("kernel", "dilation", "p"), m.choice(), strict=True))
                for site, m in zip(found, mixed, strict=True)
            }
            self.log_event(
                {
                    "event": "receptive_epoch",
                    "epoch": epoch + 1,
                    "steps": steps,
                    "train_loss": loss,
                    "val": metrics,
                    "choices": choices,
                    "seconds": time.perf_counter() - started,
                }
            )
            pm = ctx.task.primary_metric
            ctx.reporter.log(
                f"receptive epoch {epoch + 1}/{s.epochs}: train loss {loss:.4f} | val {pm} "
                f"{metrics[pm]:.4f} | "
                + ", ".join(f"{p} k{c['kernel']} d{c['dilation']}" for p, c in choices.items())
            )
            if timed_out:
                break
            if ckpt.enabled:
                ckpt.save(
                    {
                        "epoch": epoch + 1,
                        "net": {k: v.detach().cpu() for k, v in core.state_dict().items()},
                        "w_opt": w_opt.state_dict(),
                        "a_opt": a_opt.state_dict(),
                        "events": self.events,
                        "seconds": spent + time.perf_counter() - t0,
                    }
                )
        chosen = tuple(
            sorted((site.path, *m.choice()[:2]) for site, m in zip(found, mixed, strict=True))
        )
        result = type(arch)(**{**_fields(arch), "convs": chosen})
        self.log_event(
            {
                "event": "receptive_result",
                "arch": result.to_dict(),
                "probabilities": {
                    site.path: m.probabilities().detach().cpu().tolist()
                    for site, m in zip(found, mixed, strict=True)
                },
                "kernels": list(self.kernels),
                "dilations": list(self.dilations),
            }
        )
        ctx.reporter.log(f"receptive: the network: {result}")
        return SearchResult(
            genotype=result,
            history=self.events,
            val_metrics=metrics,
            seconds=time.perf_counter() - t0,
        )

    def _epoch(self, net, w_opt, a_opt, epoch: int, deadline: float | None):
        """One epoch of alternating steps: weights on their part, logits on theirs. Returns the
        mean training loss, the steps taken, and whether the time budget ended it."""
        s, cfg, ctx = self.s, self.cfg, self.ctx
        seed = cfg.seed * 7919 + epoch
        gen = torch.Generator().manual_seed(seed)
        augment = train_augment(cfg.train.model_copy(update={"augment": s.augment}), self.hw, gen)
        bs = min(s.batch_size, len(self.weights_part[0]))
        w_batches = ctx.place.batches(*self.weights_part, bs, shuffle=True, seed=seed)
        a_bs = min(s.batch_size, len(self.logits_part[0]))
        a_batches = ctx.place.batches(*self.logits_part, a_bs, shuffle=True, seed=seed + 1)
        a_iter = iter(a_batches)
        net.train()
        total, steps = 0.0, 0
        for xb, yb in w_batches:
            if STOP:
                raise Interrupted(f"stopped in the receptive-field search, epoch {epoch + 1}")
            if deadline is not None and time.perf_counter() > deadline:
                return total / max(1, steps), steps, True
            if augment is not None:
                xb = augment(xb)
            loss = ctx.task.loss(model_output(net, xb), ctx.task.encode_targets(yb))
            w_opt.zero_grad(set_to_none=True)
            a_opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(
                [p for g in w_opt.param_groups for p in g["params"]], 5.0
            )
            w_opt.step()
            try:
                xa, ya = next(a_iter)
            except StopIteration:
                a_iter = iter(a_batches)
                xa, ya = next(a_iter)
            a_loss = ctx.task.loss(model_output(net, xa), ctx.task.encode_targets(ya))
            w_opt.zero_grad(set_to_none=True)
            a_opt.zero_grad(set_to_none=True)
            a_loss.backward()
            a_opt.step()
            total += float(loss.detach())
            steps += 1
        return total / max(1, steps), steps, False


def _fields(arch) -> dict:
    from dataclasses import fields

    return {f.name: getattr(arch, f.name) for f in fields(arch)}
