"""Widening a convolution of your own network (``--model``) without changing what it computes
(Net2WiderNet, Chen et al. 2016): the convolution's output channels doubled, each copied once,
with the BatchNorms on their way; the one layer that reads them (the next convolution, or a
linear layer after a global pooling) splits each input's weight between the channel and its copy
as 1/2 + d and 1/2 - d with a small random d, as `scinas.spaces.macro_morph` widens its stages:
the sum is the old weight, so the function is kept, and the copies learn apart.

Where a convolution's channels go is read from the network's graph (`torch.fx`), with the shapes
of a forward pass: through layers that act on each channel alone (BatchNorm, activations,
dropout, pooling, a reduction over the positions) to exactly one convolution, or to one linear
layer once nothing but the channels is left. A convolution whose channels go anywhere else (a
residual sum, a concatenation, two readers, a flattened map) is not widened; a network that fx
cannot trace (its forward branches on values) offers no widening."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

MAX_WIDTH = 1024  # the most channels a widened convolution gets
SPLIT = 0.1  # the largest |d| of the reader's weight split

CONVS = (nn.Conv1d, nn.Conv2d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
CHANNELWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Tanh,
    nn.Sigmoid, nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
    nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
)  # fmt: skip
CHANNELWISE_FUNCTIONS = {
    torch.relu, F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.mish, F.hardswish,
    torch.tanh, torch.sigmoid, F.sigmoid, F.tanh, F.dropout,
    F.max_pool1d, F.max_pool2d, F.avg_pool1d, F.avg_pool2d, F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d, F.adaptive_max_pool1d, F.adaptive_max_pool2d,
}  # fmt: skip
CHANNELWISE_METHODS = {"relu", "sigmoid", "tanh", "contiguous"}
REDUCTIONS = {"mean", "amax", "sum", torch.mean, torch.amax, torch.sum}
RESHAPES = {"flatten", "view", "reshape", "squeeze", torch.flatten, torch.squeeze}


@dataclass(frozen=True)
class Readers:
    """Where a convolution's channels go: the BatchNorms on their way, and the one layer (a
    convolution or a linear layer) that reads them."""

    norms: tuple[str, ...]
    reader: str


def plan(net: nn.Module, shape: tuple[int, ...]) -> dict[str, Readers]:
    """The convolutions of ``net`` (inputs of ``shape``) that can be widened, with their readers;
    empty when fx cannot trace the network."""
    from torch.fx.passes.shape_prop import ShapeProp

    was = net.training
    try:
        gm = torch.fx.symbolic_trace(net)  # shares net's modules
        gm.eval()
        with torch.no_grad():
            ShapeProp(gm).propagate(torch.zeros(2, *shape))
    except Exception:  # the user's forward: it may branch on values, or not trace at all
        return {}
    finally:
        net.train(was)
    modules = dict(gm.named_modules())
    calls = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")
    out = {}
    for node in gm.graph.nodes:
        m = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(m, CONVS) and m.groups == 1 and calls[node.target] == 1:
            found = _readers(node, m.out_channels, modules, calls)
            if found is not None:
                out[node.target] = found
    return out


def _shape(node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if hasattr(node, "meta") else None
    return tuple(meta.shape) if hasattr(meta, "shape") else None


def _size_query(node) -> bool:
    """A use of a tensor that reads its size, not its values (``x.size(0)``, ``x.shape``)."""
    if node.op == "call_method" and node.target in ("size", "dim"):
        return True
    return node.op == "call_function" and node.target is getattr


def _others(node, cur) -> bool:
    """Whether ``node`` takes a node other than ``cur`` among its arguments."""
    args = [*node.args, *node.kwargs.values()]
    return any(isinstance(a, torch.fx.Node) and a is not cur for a in args)


def _kind(node, modules) -> str | None:
    if node.op == "call_module":
        m = modules[node.target]
        for kinds, name in (
            (NORMS, "norm"),
            (CHANNELWISE_MODULES, "channelwise"),
            (CONVS, "conv"),
            (nn.Linear, "linear"),
            (nn.Flatten, "reshape"),
        ):
            if isinstance(m, kinds):
                return name
        return None
    if node.op not in ("call_function", "call_method"):
        return None
    t = node.target
    if t in CHANNELWISE_FUNCTIONS or (node.op == "call_method" and t in CHANNELWISE_METHODS):
        return "channelwise"
    return "reduce" if t in REDUCTIONS else "reshape" if t in RESHAPES else None


def _reduced_dims(node, ndim: int) -> set[int] | None:
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    if dims is None:
        return None
    dims = [dims] if isinstance(dims, int) else list(dims)
    if not all(isinstance(d, int) for d in dims):
        return None
    return {d % ndim for d in dims}


def _readers(node, C: int, modules, calls) -> Readers | None:
    """Follow the ``C`` channels of convolution ``node`` to their one reader (None: they go
    elsewhere too, or through a layer that mixes them)."""
    norms, cur = [], node
    while True:
        users = [u for u in cur.users if not _size_query(u)]
        if len(users) != 1 or not users[0].args or users[0].args[0] is not cur:
            return None
        u, before, after = users[0], _shape(cur), _shape(users[0])
        kind = _kind(u, modules)
        if before is None or kind is None or (u.op == "call_module" and calls[u.target] != 1):
            return None
        if kind == "conv":
            m = modules[u.target]
            ok = m.groups == 1 and m.in_channels == C and len(before) == m.weight.dim()
            return Readers(tuple(norms), u.target) if ok and not _others(u, cur) else None
        if kind == "linear":
            ok = modules[u.target].in_features == C and before == (before[0], C)
            return Readers(tuple(norms), u.target) if ok and not _others(u, cur) else None
        if after is None or len(after) < 2 or after[1] != C:
            return None
        if kind == "reshape":  # only a map of single positions flattened to its channels
            if any(s != 1 for s in before[2:]) or after != (before[0], C):
                return None
        elif _others(u, cur):
            return None
        elif kind == "reduce":
            dims = _reduced_dims(u, len(before))
            if dims is None or dims & {0, 1}:
                return None
        elif kind == "norm":
            if modules[u.target].num_features != C:
                return None
            norms.append(u.target)
        cur = u


def set_module(net: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` at ``path`` (dotted) in ``net``."""
    parent, _, name = path.rpartition(".")
    setattr(net.get_submodule(parent) if parent else net, name, module)


def conv_like(m: nn.Module, c_in=None, c_out=None, kernel=None, padding=None) -> nn.Module:
    """A fresh convolution as ``m`` (a linear layer: as ``m`` with ``c_in`` inputs), with the
    sizes given changed."""
    if isinstance(m, nn.Linear):
        return nn.Linear(c_in or m.in_features, m.out_features, bias=m.bias is not None)
    return type(m)(
        c_in or m.in_channels,
        c_out or m.out_channels,
        kernel or m.kernel_size,
        stride=m.stride,
        padding=m.padding if padding is None else padding,
        dilation=m.dilation,
        groups=m.groups,
        bias=m.bias is not None,
        padding_mode=m.padding_mode,
    )


def resize(net: nn.Module, widths: dict[str, int], found: dict[str, Readers]) -> nn.Module:
    """``net`` with the convolutions of ``widths`` given those many output channels, their
    BatchNorms and readers resized to match (fresh weights); ``found`` is `plan`'s answer."""
    ins = {found[p].reader: w for p, w in widths.items()}
    for path in sorted(set(widths) | set(ins)):
        set_module(net, path, conv_like(net.get_submodule(path), ins.get(path), widths.get(path)))
    for p, w in widths.items():
        for path in found[p].norms:
            b = net.get_submodule(path)
            set_module(net, path, type(b)(w, b.eps, b.momentum, b.affine, b.track_running_stats))
    return net


def fill(old: nn.Module, new: nn.Module, path: str, readers: Readers, gen) -> None:
    """``new`` (``old`` with convolution ``path`` doubled) given ``old``'s function: every
    channel of the convolution and of its BatchNorms copied once, the reader's weight split."""
    src, dst = old.state_dict(), new.state_dict()
    doubled = {f"{path}.{k}" for k in ("weight", "bias")}
    doubled |= {f"{n}.{k}" for n in readers.norms for k in ("weight", "bias", "running_mean")}
    doubled |= {f"{n}.running_var" for n in readers.norms}
    split = f"{readers.reader}.weight"
    for name, value in src.items():
        if name == split:
            n = value.shape[1]
            d = (torch.rand(n, generator=gen) * 2 - 1) * SPLIT
            half = (0.5 + d).view([1, n] + [1] * (value.dim() - 2)).to(value)
            dst[name].copy_(torch.cat([value * half, value * (1 - half)], 1))
        elif name in doubled:
            dst[name].copy_(torch.cat([value, value], 0))
        else:
            dst[name].copy_(value)
