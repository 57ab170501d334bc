"""Zero-cost proxies: scores of an untrained network that rank architectures without training.

Each proxy scores a freshly initialised network on one batch of the user's data (or, for
synflow, on an all-ones input); a higher score predicts a better trained network. The proxies
share one forward pass in train mode (BatchNorm on batch statistics, as the papers do) and at
most two backward passes, so the full set costs about two training steps of the network:

- ``synflow`` (Tanaka et al. 2020; as a NAS proxy, Abdelfattah et al. 2021): every weight
  replaced by its absolute value, the network run (eval mode) in float64 on one all-ones input
  with its BatchNorm layers removed (replaced by identities: BatchNorm of a constant input
  divides by a zero variance; Abdelfattah et al. compute it on a copy without BatchNorm for the
  same reason, and at initialisation its affine part is the identity), ``R`` the sum of outputs;
  the score is sum |theta * dR/dtheta| over the convolution and linear weights. Float64 keeps
  ``R`` finite in deep networks, where float32 overflows.
- ``naswot`` (Mellor et al. 2021): the binary codes of every ReLU's units (on or off) over the
  batch, the kernel K[i, j] = number of units where samples i and j agree, and the score
  log|det K|. It needs ReLU activations: any call of ``torch.relu`` (modules or functional) is
  seen, through a torch function mode.
- ``grad_norm``: the sum over convolution and linear weights of the L2 norm of dLoss/dW.
- ``snip`` (Lee et al. 2019): sum |W * dLoss/dW| over the same weights (the loss's sensitivity
  to a multiplicative mask on each weight, at mask 1).
- ``jacov`` (Mellor et al. 2021, v1): the correlation matrix of the per-sample input gradients
  of the summed outputs; score -sum(log(lambda + k) + 1/(lambda + k)) over its eigenvalues,
  k = 1e-5.
- ``params`` and ``flops``: the network's parameter count and forward FLOPs per sample
  (`scinas.flops`).

Proxies are registered in `PROXIES`; each declares what it needs (``needs``: ``"relu"``, a loss);
`check_proxies` refuses, before anything runs, a proxy the task's networks cannot feed, naming
the ones that can. A combination ``a+b`` scores architectures by the mean of their ranks under
each proxy (within the scored pool).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn
from torch.overrides import TorchFunctionMode

from .bounds import MAX_BATCH, MAX_CANDIDATES
from .errors import UserError
from .flops import count_flops, count_parameters
from .registry import Registry

# ----------------------------------------------------------------------------- the shared pass


def _output(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out[0] if isinstance(out, tuple) else out


def _weights(model: nn.Module) -> list[nn.Parameter]:
    """The weights the gradient proxies sum over: those of convolutions and linear layers."""
    return [
        m.weight
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.Conv1d | nn.Linear)
        and m.weight is not None
        and m.weight.requires_grad
        and "auxiliary" not in name
    ]


_RELUS = {torch.relu, torch.relu_, torch.nn.functional.relu, torch.Tensor.relu}


class _ReluCodes(TorchFunctionMode):
    """Accumulates the NASWOT kernel over every ReLU applied while it is active."""

    def __init__(self, batch: int):
        super().__init__()
        self.K = torch.zeros(batch, batch, dtype=torch.float64)
        self.seen = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in _RELUS and isinstance(out, torch.Tensor) and out.dim() >= 1:
            c = (out.detach() > 0).flatten(1).to(torch.float32)
            if c.shape[0] == self.K.shape[0]:
                # agreements = c c^T + (1-c)(1-c)^T = 2 c c^T - s_i - s_j + D
                s = c.sum(1)
                k = 2 * (c @ c.T) - s[:, None] - s[None, :] + c.shape[1]
                self.K += k.to(torch.float64).cpu()
                self.seen += 1
        return out


@dataclass
class Probe:
    """One architecture's network and batch; what several proxies need is computed once."""

    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor  # encoded targets for the task's loss
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    input_shape: tuple[int, int, int]
    want_codes: bool = False
    want_input_grad: bool = False
    _codes: _ReluCodes | None = field(default=None, repr=False)

    @cached_property
    def passes(self) -> dict:
        """The forward pass in train mode (ReLU codes recorded when wanted), the loss's gradients
        of the weights, and (when wanted) the input gradient of the summed outputs."""
        model = self.model
        model.train()
        x = self.x.detach().clone().requires_grad_(self.want_input_grad)
        self._codes = _ReluCodes(len(x)) if self.want_codes else None
        with self._codes or contextlib.nullcontext():
            out = _output(model, x)
        weights = _weights(model)
        loss = self.loss_fn(out, self.y)
        grads = torch.autograd.grad(
            loss, weights, retain_graph=self.want_input_grad, allow_unused=True
        )
        result = {
            "weights": [w.detach() for w in weights],
            "grads": [
                torch.zeros_like(w) if g is None else g for w, g in zip(weights, grads, strict=True)
            ],
        }
        if self.want_input_grad:
            (gx,) = torch.autograd.grad(out.sum(), x, allow_unused=True)
            result["input_grad"] = None if gx is None else gx.detach()
        return result

    @property
    def codes(self) -> _ReluCodes:
        self.passes  # noqa: B018  (runs the forward pass that records them)
        assert self._codes is not None
        return self._codes


# ----------------------------------------------------------------------------- proxies


def synflow(probe: Probe) -> float:
    """Synaptic flow of an all-ones input through |weights|, float64, BatchNorm as identity."""
    net = copy.deepcopy(probe.model).double()
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, nn.Identity())
    net.eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    weights = _weights(net)
    device = weights[0].device if weights else torch.device("cpu")
    x = torch.ones(1, *probe.input_shape, dtype=torch.float64, device=device)
    R = _output(net, x).sum()
    grads = torch.autograd.grad(R, weights, allow_unused=True)
    with torch.no_grad():
        terms = [(w * g).abs().sum() for w, g in zip(weights, grads, strict=True) if g is not None]
    return float(sum(terms)) if terms else 0.0


def naswot(probe: Probe) -> float:
    sign, logdet = torch.linalg.slogdet(probe.codes.K)
    return float(logdet) if sign > 0 else -math.inf


def grad_norm(probe: Probe) -> float:
    return float(sum(g.norm() for g in probe.passes["grads"]))


def snip(probe: Probe) -> float:
    p = probe.passes
    return float(sum((w * g).abs().sum() for w, g in zip(p["weights"], p["grads"], strict=True)))


def jacov(probe: Probe, k: float = 1e-5) -> float:
    gx = probe.passes["input_grad"]
    if gx is None:  # the output does not depend on the input (a disconnected cell)
        return -math.inf
    J = gx.flatten(1).double().cpu()
    C = torch.corrcoef(J)
    if not torch.isfinite(C).all():  # a constant Jacobian row (e.g. a dead network)
        return -math.inf
    lam = torch.linalg.eigvalsh(C)
    return float(-(torch.log(lam + k) + 1.0 / (lam + k)).sum())


def params(probe: Probe) -> float:
    return float(count_parameters(probe.model))


def flops(probe: Probe) -> float:
    """`scinas.flops.count_flops`: one sample's forward in eval mode, gradients off. Counting
    the shared batch pass gives the same per-sample figure but puts torch's FlopCounterMode on
    every op of the batch, and would run that pass for a request of ``flops`` alone."""
    with torch.no_grad():
        return float(count_flops(probe.model, probe.input_shape))


@dataclass(frozen=True)
class Proxy:
    """A registered zero-cost proxy: higher scores predict higher accuracy."""

    name: str
    description: str
    score: Callable[[Probe], float]
    needs: tuple[str, ...] = ()  # "relu": the network applies ReLUs; "loss": the task's loss
    codes: bool = False  # reads the ReLU codes of the shared forward pass
    input_grad: bool = False  # reads the input gradient


PROXIES: Registry[Proxy] = Registry("zero-cost proxy")


def register_proxy(proxy: Proxy) -> Proxy:
    return PROXIES.register(proxy.name, proxy)


register_proxy(
    Proxy("synflow", "synaptic flow of |weights| on an all-ones input (float64)", synflow)
)
register_proxy(
    Proxy(
        "naswot",
        "log-determinant of the ReLU activation-pattern kernel",
        naswot,
        ("relu",),
        codes=True,
    )
)
register_proxy(
    Proxy("grad_norm", "sum of the weights' gradient norms of the loss", grad_norm, ("loss",))
)
register_proxy(Proxy("snip", "sum |W * dLoss/dW| (connection sensitivity)", snip, ("loss",)))
register_proxy(
    Proxy("jacov", "input-Jacobian correlation eigenvalue score", jacov, input_grad=True)
)
register_proxy(Proxy("params", "parameter count", params))
register_proxy(Proxy("flops", "forward FLOPs per sample", flops))


# ----------------------------------------------------------------------------- scoring


def parse_combo(text: str) -> tuple[str, ...]:
    """``"synflow"`` or a rank-average combination ``"synflow+naswot"`` -> its proxy names,
    each checked against the registry (an unknown one names the closest)."""
    names = tuple(n.strip() for n in str(text).split("+"))
    if not all(names):
        raise ValueError(f"'{text}' is not a proxy or a combination such as synflow+naswot")
    for n in names:
        PROXIES.get(n)
    if len(set(names)) != len(names):
        raise ValueError(f"'{text}' names a proxy twice")
    return names


def score_network(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable,
    names: Sequence[str],
    input_shape: tuple[int, int, int] | None = None,
) -> dict[str, float]:
    """Every proxy of ``names`` on ``model`` (freshly initialised; its BatchNorm statistics are
    changed by the train-mode pass) with the batch (x, y), ``y`` encoded for ``loss_fn``."""
    proxies = [PROXIES.get(n) for n in names]
    probe = Probe(
        model,
        x,
        y,
        loss_fn,
        tuple(input_shape or x.shape[1:]),
        want_codes=any(p.codes for p in proxies),
        want_input_grad=any(p.input_grad for p in proxies),
    )
    return {p.name: p.score(probe) for p in proxies}


def missing_needs(model: nn.Module, x: torch.Tensor) -> set[str]:
    """What the network cannot offer a proxy: ``"relu"`` when its forward applies no ReLU."""
    codes = _ReluCodes(len(x))
    was = model.training
    model.eval()
    with torch.no_grad(), codes:
        _output(model, x)
    model.train(was)
    return set() if codes.seen else {"relu"}


def check_proxies(names: Sequence[str], model: nn.Module, x: torch.Tensor, setting: str) -> None:
    """Refuse (UserError) a proxy of ``names`` this network cannot feed, naming those that can."""
    lacking = missing_needs(model, x)
    bad = [n for n in names if lacking & set(PROXIES.get(n).needs)]
    if bad:
        able = [n for n in PROXIES if not lacking & set(PROXIES.get(n).needs)]
        why = {"relu": "applies no ReLU (NASWOT reads ReLU on/off patterns)"}
        raise UserError(
            f"{setting}: proxy {', '.join(bad)} cannot run on this task's networks: the network "
            f"{'; '.join(why[k] for k in sorted(lacking))}. Proxies that can: {', '.join(able)}."
        )


def rank_average(scores: Sequence[dict[str, float]], names: Sequence[str]) -> np.ndarray:
    """The combined score of each entry: the mean over ``names`` of its rank (0 = worst) under
    each proxy; NaN counts as the worst score."""
    total = np.zeros(len(scores))
    for n in names:
        v = np.array([s[n] for s in scores], dtype=np.float64)
        v = np.where(np.isnan(v), -np.inf, v)
        _, where, counts = np.unique(v, return_inverse=True, return_counts=True)
        ends = np.cumsum(counts)
        total += ((ends - counts + ends - 1) / 2)[where]  # tied scores share their mean rank
    return total / len(names)


def top_architectures(scorer, archs: Sequence, names: Sequence[str], k: int) -> list[tuple]:
    """The ``k`` best of ``archs`` by the rank average of ``names`` (ties to the earliest):
    [(arch, combined score, per-proxy scores)], best first."""
    scores = [scorer(a) for a in archs]
    combined = rank_average(scores, names)
    order = sorted(range(len(archs)), key=lambda i: (-combined[i], i))[:k]
    return [(archs[i], float(combined[i]), scores[i]) for i in order]


# ----------------------------------------------------------------------------- settings


class WarmStartSettings(BaseModel):
    """Zero-cost warm start of a black-box search: score a pool of random architectures with a
    proxy (or a rank-average combination), enqueue the best into the study before sampling."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warm_start: str | None = Field(
        None,
        description="zero-cost proxy (or combination a+b, rank-averaged) that picks the first "
        "candidates: the best of search.warm_start_pool random architectures are evaluated first",
    )
    warm_start_pool: int = Field(
        100, ge=1, le=MAX_CANDIDATES, description="random architectures scored by the proxy"
    )
    warm_start_top: int = Field(
        5, ge=1, le=MAX_CANDIDATES, description="best-scoring architectures enqueued"
    )
    proxy_batch: int = Field(
        64, ge=2, le=MAX_BATCH, description="training images per proxy evaluation"
    )

    @field_validator("warm_start")
    @classmethod
    def _known(cls, v):
        if v is not None:
            parse_combo(v)
        return v

    def proxy_plan(self) -> tuple[tuple[str, ...], int, int] | None:
        """(proxy names, pool size, how many to enqueue), None without a warm start."""
        if self.warm_start:
            return parse_combo(self.warm_start), self.warm_start_pool, self.warm_start_top
        return None
