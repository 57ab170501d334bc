"""Widening convolutions of your own network (``--model``) without changing what it computes
(Net2WiderNet, Chen et al. 2016): a convolution's output channels doubled, each copied once,
with the BatchNorms on their way; each layer that reads them (a convolution, or a linear layer
after a global pooling) splits each input's weight between the channel and its copy as 1/2 + d
and 1/2 - d with a small random d, as `scinas.spaces.macro_morph` widens its stages: the sum is
the old weight, so the function is kept, and the copies learn apart.

Where a convolution's channels go is read from the network's graph (`torch.fx`), with the shapes
of a forward pass: through layers that act on each channel alone (BatchNorm, activations,
dropout, pooling, a reduction over the positions) and element-wise sums and products, to the
layers that read them. Convolutions whose outputs meet in a sum (a residual stream: the stem,
each block's last convolution, a projection shortcut) share their channels and widen together,
as one `Group`. Channels that reach anything else (a concatenation, a flattened map, the
network's output, a parameter of their size, a module called twice) keep their width; a network
that fx cannot trace (its forward branches on values) offers no widening."""

from __future__ import annotations

import operator
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
class Group:
    """Convolutions whose outputs meet (a residual sum, or one convolution alone): they widen
    together. Their channels pass the BatchNorms ``norms`` on their way and are read by
    ``readers`` (convolutions, or linear layers once only the channels are left)."""

    writers: tuple[str, ...]
    norms: tuple[str, ...]
    readers: tuple[str, ...]


ELEMENTWISE = {
    operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul,
    operator.truediv, torch.add, torch.sub, torch.mul, torch.div,
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_",
}  # fmt: skip


def plan(net: nn.Module, shape: tuple[int, ...]) -> dict[str, Group]:
    """The convolutions of ``net`` (inputs of ``shape``) that can be widened, each with its
    `Group`; empty when fx cannot trace the network."""
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
    spaces = _Spaces(gm)
    out = {}
    for group in spaces.groups():
        for w in group.writers:
            out[w] = group
    return out


class _Spaces:
    """The channel spaces of a traced network: tensors whose channels are the same channels
    (through channel-wise layers and element-wise sums), found with a union-find. A space widens
    when every tensor in it comes from its convolutions and goes to known layers."""

    def __init__(self, gm: torch.fx.GraphModule):
        self.modules = dict(gm.named_modules())
        self.calls = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")
        self.parent: dict[int, int] = {}
        self.of: dict[torch.fx.Node, int] = {}
        self.width: dict[int, int] = {}
        self.members: dict[int, dict[str, list[str]]] = {}
        self.blocked: set[int] = set()
        for node in gm.graph.nodes:
            self._visit(node)

    # the union-find
    def _new(self, width: int | None, blocked: bool = False) -> int:
        k = len(self.parent)
        self.parent[k], self.width[k] = k, width
        self.members[k] = {"writers": [], "norms": [], "readers": []}
        if blocked or width is None:
            self.blocked.add(k)
        return k

    def _find(self, k: int) -> int:
        while self.parent[k] != k:
            self.parent[k] = self.parent[self.parent[k]]
            k = self.parent[k]
        return k

    def _union(self, a: int, b: int) -> int:
        a, b = self._find(a), self._find(b)
        if a == b:
            return a
        self.parent[b] = a
        for key in ("writers", "norms", "readers"):
            self.members[a][key] += self.members[b][key]
        if b in self.blocked or self.width[a] != self.width[b]:
            self.blocked.add(a)
        return a

    def _block(self, node) -> None:
        if isinstance(node, torch.fx.Node) and node in self.of:
            self.blocked.add(self._find(self.of[node]))

    def _space(self, node) -> int | None:
        return self._find(self.of[node]) if node in self.of else None

    def _visit(self, node) -> None:
        tensors = [a for a in node.all_input_nodes if a in self.of]
        # a parameter or buffer of the network taking part (a learnt scale of the channels)
        foreign = [a for a in node.all_input_nodes if a not in self.of and not _size_query(a)]
        shape = _shape(node)
        width = shape[1] if shape is not None and len(shape) >= 2 else None
        if _size_query(node) or node.op == "get_attr":
            return
        if foreign and node.op != "output":
            for a in tensors:
                self._block(a)
            self.of[node] = self._new(width, blocked=True)
            return
        if node.op in ("placeholder", "output"):
            for a in tensors:
                self._block(a)
            if node.op == "placeholder":
                self.of[node] = self._new(width, blocked=True)
            return
        first = node.args[0] if node.args else None
        inp = first if isinstance(first, torch.fx.Node) and first in self.of else None
        before = _shape(inp) if inp is not None else None
        kind = _kind(node, self.modules)
        if node.op == "call_module" and self.calls[node.target] != 1:
            kind = None  # a module called twice would be widened for both calls
        others = [a for a in tensors if a is not inp]
        if kind == "conv" and inp is not None and not others:
            m = self.modules[node.target]
            if m.groups == 1 and before is not None and len(before) == m.weight.dim():
                self.members[self._space(inp)]["readers"].append(node.target)
                k = self._new(width)
                self.members[k]["writers"].append(node.target)
                self.of[node] = k
                return
        elif kind == "linear" and inp is not None and not others:
            if (
                before is not None
                and len(before) == 2
                and before[1] == self.width[self._space(inp)]
            ):
                self.members[self._space(inp)]["readers"].append(node.target)
                self.of[node] = self._new(width, blocked=True)  # no convolution writes it
                return
        elif kind in ("norm", "channelwise", "reduce", "reshape") and inp is not None:
            if (
                not others
                and width == self.width[self._space(inp)]
                and _keeps(kind, node, before, shape, self.modules)
            ):
                if kind == "norm":
                    self.members[self._space(inp)]["norms"].append(node.target)
                self.of[node] = self._space(inp)
                return
        elif _elementwise(node) and width is not None and tensors:  # scalars pass
            ok = all(_aligned(_shape(a), shape) for a in tensors)
            if ok and all(self.width[self._space(a)] == width for a in tensors):
                k = self._space(tensors[0])
                for a in tensors[1:]:
                    k = self._union(k, self._space(a))
                self.of[node] = k
                return
        for a in tensors:  # anything else: the channels it takes and gives stay as they are
            self._block(a)
        self.of[node] = self._new(width, blocked=True)

    def groups(self) -> list[Group]:
        out = []
        for k in {self._find(k) for k in self.parent}:
            m = self.members[k]
            if k in self.blocked or not m["writers"] or not m["readers"]:
                continue
            out.append(Group(*(tuple(dict.fromkeys(m[key])) for key in m)))
        return sorted(out, key=lambda g: g.writers)


def _keeps(kind: str, node, before, after, modules) -> bool:
    """Whether a per-channel layer ``node`` keeps each channel apart (same channel count)."""
    if before is None or after is None or len(after) < 2:
        return False
    if kind == "reshape":  # only a map of single positions flattened to its channels
        return all(s == 1 for s in before[2:]) and after == (before[0], before[1])
    if kind == "reduce":
        dims = _reduced_dims(node, len(before))
        return dims is not None and not dims & {0, 1}
    if kind == "norm":
        return modules[node.target].num_features == before[1]
    return True


def _elementwise(node) -> bool:
    return node.op in ("call_function", "call_method") and node.target in ELEMENTWISE


def _aligned(a, out) -> bool:
    """Whether an element-wise operand of shape ``a`` meets the others channel by channel: the
    output's batch and channels, any positions (broadcast)."""
    return a is not None and out is not None and len(a) == len(out) and a[:2] == out[:2]


def _shape(node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta") if hasattr(node, "meta") else None
    return tuple(meta.shape) if hasattr(meta, "shape") else None


def _size_query(node) -> bool:
    """A use of a tensor that reads its size, not its values (``x.size(0)``, ``x.shape``)."""
    if node.op == "call_method" and node.target in ("size", "dim"):
        return True
    return node.op == "call_function" and node.target is getattr


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


def resize(net: nn.Module, widths: dict[str, int], found: dict[str, Group]) -> nn.Module:
    """``net`` with the convolutions of ``widths`` given those many output channels, their
    BatchNorms and readers resized to match (fresh weights); ``found`` is `plan`'s answer."""
    ins = {r: w for p, w in widths.items() for r in found[p].readers}
    for path in sorted(set(widths) | set(ins)):
        set_module(net, path, conv_like(net.get_submodule(path), ins.get(path), widths.get(path)))
    norms = {n: w for p, w in widths.items() for n in found[p].norms}
    for path, w in norms.items():
        b = net.get_submodule(path)
        set_module(net, path, type(b)(w, b.eps, b.momentum, b.affine, b.track_running_stats))
    return net


def unequal(found: dict[str, Group], widths: dict[str, int]) -> Group | None:
    """A group whose convolutions ``widths`` (every widenable convolution's output channels)
    does not give one width: their outputs meet, so their channels must match."""
    for group in {g.writers: g for g in found.values()}.values():
        if len({widths[w] for w in group.writers}) > 1:
            return group
    return None


def fill(old: nn.Module, new: nn.Module, group: Group, gen) -> None:
    """``new`` (``old`` with the convolutions of ``group`` doubled) given ``old``'s function:
    every channel of the convolutions and of their BatchNorms copied once, each reader's weight
    split between a channel and its copy (a convolution that reads and writes the group, as in
    ``y = y + conv(y)``, has its outputs copied and its inputs split)."""
    src, dst = old.state_dict(), new.state_dict()
    doubled = {f"{p}.{k}" for p in group.writers for k in ("weight", "bias")}
    doubled |= {f"{n}.{k}" for n in group.norms for k in ("weight", "bias", "running_mean")}
    doubled |= {f"{n}.running_var" for n in group.norms}
    split = {f"{r}.weight" for r in group.readers}
    for name, value in src.items():
        if name in doubled:
            value = torch.cat([value, value], 0)
        if name in split:
            n = value.shape[1]
            d = (torch.rand(n, generator=gen) * 2 - 1) * SPLIT
            half = (0.5 + d).view([1, n] + [1] * (value.dim() - 2)).to(value)
            value = torch.cat([value * half, value * (1 - half)], 1)
        dst[name].copy_(value)
