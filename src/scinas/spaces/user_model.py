"""Your own network from a Python file: ``--model my_net.py:build``.

``build(input_shape, num_outputs)`` returns a ``torch.nn.Module`` that maps a batch of shape
``(N, *input_shape)`` to ``(N, num_outputs)`` (class logits or regression targets). scinas trains
it as it trains its own networks (`scinas train --model`, the method ``model`` of `scinas
compare`), as a fixed architecture of the baseline space: its genotype names the file, the
function and the file's SHA-256.

Loading a Python file runs it. scinas therefore runs the file only when the user names it in this
process (`trust`: the CLI's ``--model``), never because a run directory or a config names it: a
resumed, evaluated or exported run of a user's network needs ``--model`` again, and the file named
must be the one the run was trained with (same SHA-256)."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..errors import UserError
from . import user_widths

SPEC = re.compile(r"^(?P<file>.+\.py):(?P<function>[A-Za-z_][A-Za-z0-9_]*)$")
# (SHA-256, function) -> the file the user named for it in this process
_TRUSTED: dict[tuple[str, str], Path] = {}
_MODULES: dict[str, object] = {}  # loaded files, by SHA-256
_CHECKED: set[tuple] = set()  # (SHA-256, function, kernels, widths, input shape, outputs)
_SHAPES: dict[tuple[str, str], tuple] = {}  # (SHA-256, function) -> (input shape, outputs) built
_PLANS: dict[tuple, dict] = {}  # (SHA-256, function, input shape, outputs) -> widenable convs


def is_spec(text: str) -> bool:
    return SPEC.match(str(text)) is not None


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise UserError(f"--model: cannot read {path}: {e.strerror or e}.") from None


@dataclass(frozen=True)
class UserModelArch:
    """The user's network: JSON ``{"space": "baseline", "name": "model", "file": ...,
    "function": ..., "sha256": ...}``."""

    space: ClassVar[str] = "baseline"
    name: ClassVar[str] = "model"

    file: str
    function: str
    sha256: str
    # kernel sizes the search changed: (module path, kernel size), sorted
    kernels: tuple[tuple[str, int], ...] = ()
    # receptive fields a receptive-field search chose: (module path, kernel, dilation), sorted
    convs: tuple[tuple[str, int, int], ...] = ()
    # output channels the search gave convolutions: (module path, channels), sorted
    widths: tuple[tuple[str, int], ...] = ()

    @property
    def spec(self) -> str:
        return f"{self.file}:{self.function}"

    def __str__(self) -> str:
        grown = ", ".join(
            [f"{p} k{k}" for p, k in self.kernels] + [f"{p} w{w}" for p, w in self.widths]
        )
        name = f"{Path(self.file).name}:{self.function}" + (f" ({grown})" if grown else "")
        return name + receptive_summary(self.convs)

    def to_dict(self) -> dict:
        d = {
            "space": "baseline",
            "name": "model",
            "file": self.file,
            "function": self.function,
            "sha256": self.sha256,
        }
        if self.kernels:
            d["kernels"] = dict(self.kernels)
        if self.widths:
            d["widths"] = dict(self.widths)
        return {**d, **convs_dict(self.convs)}

    @classmethod
    def from_dict(cls, d: dict, source: str = "architecture") -> UserModelArch:
        kernels, widths = d.get("kernels", {}), d.get("widths", {})

        def counts(m, ok) -> bool:
            return isinstance(m, dict) and all(
                isinstance(v, int) and not isinstance(v, bool) and ok(v) for v in m.values()
            )

        if not all(isinstance(d.get(k), str) for k in ("file", "function", "sha256")) or not (
            counts(kernels, lambda k: k > 0 and k % 2)
            and counts(widths, lambda w: 1 <= w <= user_widths.MAX_WIDTH)
        ):
            raise UserError(
                f"{source}: your own network is "
                '{"space": "baseline", "name": "model", "file": ..., "function": ..., '
                '"sha256": ..., "kernels": {MODULE: ODD SIZE} (optional), "widths": {MODULE: '
                f"CHANNELS up to {user_widths.MAX_WIDTH}}} (optional)}}."
            )
        convs = parse_convs(d, source)
        return cls(
            d["file"],
            d["function"],
            d["sha256"],
            tuple(sorted(kernels.items())),
            convs,
            tuple(sorted(widths.items())),
        )

    def to_json(self, path=None) -> str:
        import json

        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text


def convs_dict(convs) -> dict:
    """The JSON of receptive fields chosen: ``{"convs": {MODULE: [KERNEL, DILATION]}}``."""
    return {"convs": {p: [k, d] for p, k, d in convs}} if convs else {}


def parse_convs(d: dict, source: str) -> tuple[tuple[str, int, int], ...]:
    """An architecture's ``"convs"`` read back (UserError naming ``source`` when malformed)."""
    from .receptive import MAX_DILATION, MAX_KERNEL

    convs = d.get("convs", {})
    ok = isinstance(convs, dict) and all(
        isinstance(v, list)
        and len(v) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
        and 1 <= v[0] <= MAX_KERNEL
        and v[0] % 2
        and 1 <= v[1] <= MAX_DILATION
        for v in convs.values()
    )
    if not ok:
        raise UserError(
            f'{source}: "convs" is {{MODULE: [ODD KERNEL SIZE up to {MAX_KERNEL}, DILATION up '
            f"to {MAX_DILATION}]}}."
        )
    return tuple(sorted((p, v[0], v[1]) for p, v in convs.items()))


def receptive_summary(convs) -> str:
    return (
        (" (receptive fields: " + ", ".join(f"{p} k{k} d{d}" for p, k, d in convs) + ")")
        if convs
        else ""
    )


def trust(spec: str) -> UserModelArch:
    """``FILE.py:FUNCTION`` named by the user: checked to exist, and from now on runnable in this
    process (for a run that recorded the same file contents and function)."""
    arch = arch_of(spec)
    _TRUSTED[(arch.sha256, arch.function)] = Path(arch.file)
    return arch


def arch_of(spec: str) -> UserModelArch:
    """The architecture ``FILE.py:FUNCTION`` names (the file checked to exist; not run, nor
    made runnable: `trust` does that)."""
    m = SPEC.match(str(spec))
    if m is None:
        raise UserError(
            f"--model {spec}: give FILE.py:FUNCTION, the Python file and the name of the function "
            "in it that builds the network (e.g. --model my_net.py:build)."
        )
    path = Path(m["file"]).expanduser()
    if not path.is_file():
        raise UserError(f"--model {spec}: {path} does not exist (or is not a file).")
    path = path.resolve()
    return UserModelArch(str(path), m["function"], _digest(path))


def _module(arch: UserModelArch, path: Path):
    if arch.sha256 not in _MODULES:
        name = f"scinas_user_model_{arch.sha256[:16]}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise UserError(f"--model {arch.spec}: {path} cannot be loaded as a Python module.")
        module = importlib.util.module_from_spec(spec)
        sys.path.insert(0, str(path.parent))  # the file may import its neighbours
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as e:  # the user's code: any error is theirs to fix
            raise UserError(
                f"--model {arch.spec}: running {path.name} raised {type(e).__name__}: {e}"
            ) from None
        finally:
            sys.path.remove(str(path.parent))
        _MODULES[arch.sha256] = module
    return _MODULES[arch.sha256]


def _path(arch: UserModelArch) -> Path:
    path = _TRUSTED.get((arch.sha256, arch.function))
    if path is not None:
        return path
    named = [(h, p) for (h, f), p in _TRUSTED.items() if f == arch.function]
    if named:
        h, p = named[-1]
        raise UserError(
            f"--model {p}:{arch.function} is not the file this network was built from: its "
            f"SHA-256 is {h[:12]}..., the run's {arch.sha256[:12]}... ({arch.file}). Name the "
            "file the run was trained with."
        )
    raise UserError(
        f"this network is your own, built by {Path(arch.file).name}:{arch.function}; scinas "
        "runs a Python file only when you name it: add --model "
        f"{arch.spec} (in Python: scinas.spaces.user_model.trust('{arch.spec}'))."
    )


class UserNetwork(nn.Module):
    """The user's module with scinas' network interface: ``(output, None)`` out, and a
    ``drop_path_prob`` the trainer may set (unused)."""

    def __init__(self, net: nn.Module, input_shape: tuple[int, ...], num_outputs: int):
        super().__init__()
        self.net = net
        self.input_shape, self.num_outputs = input_shape, num_outputs
        self.drop_path_prob = 0.0

    def forward(self, x: torch.Tensor):
        out = self.net(x)
        return (out[0] if isinstance(out, tuple) else out), None


def build(arch: UserModelArch, input_shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    """The user's network for inputs of ``input_shape`` (C, *sizes) and ``num_outputs``, checked
    to take a batch of that shape and return ``(N, num_outputs)``."""
    fn = _function(arch)
    shape = tuple(int(s) for s in input_shape)
    _SHAPES[(arch.sha256, arch.function)] = (shape, num_outputs)
    key = (arch.sha256, arch.function, arch.kernels, arch.widths, shape, num_outputs)
    if key not in _CHECKED:
        # once, on the CPU, even when the checks before a run build on the meta device: a
        # network that cannot take the data is refused before the run directory exists
        with torch.device("cpu"):
            net = _grown(arch, _call(arch, fn, shape, num_outputs), shape, num_outputs)
            _check_forward(arch, net, shape, num_outputs)
        _CHECKED.add(key)
    net = _grown(arch, _call(arch, fn, shape, num_outputs), shape, num_outputs)
    return UserNetwork(net, shape, num_outputs)


def _function(arch: UserModelArch):
    """The function of the user's file that builds the network."""
    path = _path(arch)
    fn = getattr(_module(arch, path), arch.function, None)
    if not callable(fn):
        module = _MODULES[arch.sha256]
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise UserError(
            f"--model {arch.spec}: {path.name} has no function {arch.function!r}"
            + (f" (it defines: {', '.join(found)})" if found else "")
            + "."
        )
    return fn


def _call(arch: UserModelArch, fn, shape: tuple[int, ...], num_outputs: int) -> nn.Module:
    try:
        net = fn(shape, num_outputs)
    except (Exception, SystemExit) as e:
        raise UserError(
            f"--model {arch.spec}: {arch.function}({shape}, {num_outputs}) raised "
            f"{type(e).__name__}: {e}"
        ) from None
    if not isinstance(net, nn.Module):
        raise UserError(
            f"--model {arch.spec}: {arch.function}({shape}, {num_outputs}) returned "
            f"{type(net).__name__}, not a torch.nn.Module."
        )
    return net


def _check_forward(arch, net: nn.Module, shape: tuple[int, ...], num_outputs: int) -> None:
    x = torch.zeros(2, *shape)
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            out = net(x)
    except Exception as e:
        raise UserError(
            f"--model {arch.spec}: the network does not take inputs of shape {tuple(x.shape)} "
            f"(N, *input shape): {type(e).__name__}: {e}"
        ) from None
    finally:
        net.train(was)
    out = out[0] if isinstance(out, tuple) else out
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_outputs):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(
            f"--model {arch.spec}: for inputs of shape {tuple(x.shape)} the network returns "
            f"{got}; scinas needs (N, {num_outputs}): one value per output "
            f"({num_outputs} for this data)."
        )


# ----------------------------------------------------------------------------- kernel growth

MAX_KERNEL = {1: 15, 2: 7}  # the largest kernel the search grows to, for series and images


def convs(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """The convolutions a search may grow: 1-D or 2-D, one odd size on every axis, numeric
    padding (a grown kernel keeps the output's size with padding larger by the dilation)."""
    out = []
    for path, m in net.named_modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d) and not isinstance(m.padding, str):
            k = set(m.kernel_size)
            if len(k) == 1 and next(iter(k)) % 2 == 1 and len(set(m.dilation)) == 1:
                out.append((path, m))
    return out


def _with_kernel(conv: nn.Module, k: int) -> nn.Module:
    """A fresh ``conv`` of kernel ``k``, its padding larger by the dilation per step of 2, so
    the output keeps its size."""
    grow = (k - conv.kernel_size[0]) // 2
    padding = tuple(p + grow * d for p, d in zip(conv.padding, conv.dilation, strict=True))
    return user_widths.conv_like(conv, kernel=k, padding=padding)


def _grown(arch: UserModelArch, net: nn.Module, shape: tuple, num_outputs: int) -> nn.Module:
    """``net`` with the kernel sizes and widths ``arch`` changed (the rest as the user's file
    builds it)."""
    for path, k in arch.kernels:
        try:
            conv = net.get_submodule(path)
        except AttributeError:
            raise UserError(
                f"--model {arch.spec}: the network has no module {path!r} to give a kernel of "
                f"{k}: the file builds another network than the one searched."
            ) from None
        user_widths.set_module(net, path, _with_kernel(conv, k))
    if arch.widths:
        found = widenable(arch, shape, num_outputs)
        missing = [p for p, _ in arch.widths if p not in found]
        if missing:
            raise UserError(
                f"--model {arch.spec}: the network has no convolution {missing[0]!r} that can be "
                "widened: the file builds another network than the one searched."
            )
        widths = dict(arch.widths)
        now = {p: widths.get(p, net.get_submodule(p).out_channels) for p in found}
        odd = user_widths.unequal(found, now)
        if odd is not None:
            given = ", ".join(str(now[w]) for w in odd.writers)
            raise UserError(
                f"--model {arch.spec}: the convolutions {', '.join(odd.writers)} add up their "
                f"outputs, so they need one width; the record gives them {given}."
            )
        net = user_widths.resize(net, widths, found)
    return net


def widenable(arch: UserModelArch, shape: tuple, num_outputs: int) -> dict:
    """The convolutions of the file's network that can be widened (`user_widths.plan`), traced
    once on the CPU."""
    key = (arch.sha256, arch.function, shape, num_outputs)
    if key not in _PLANS:
        with torch.device("cpu"):
            base = _call(arch, _function(arch), shape, num_outputs)
            _PLANS[key] = user_widths.plan(base, shape)
    return _PLANS[key]


@dataclass(frozen=True)
class KernelGrowth:
    """One convolution's kernel grown by 2 (zeros around the trained one, padding larger by
    the dilation): the network computes exactly what it did (`scinas.strategies.lineage`)."""

    name: str
    source: UserModelArch
    target: UserModelArch
    path: str  # the convolution, under the user's module

    def apply(self, net: UserNetwork, seed: int = 0) -> UserNetwork:
        first = next(net.parameters())
        new = build(self.target, net.input_shape, net.num_outputs).to(first.device)
        target = new.state_dict()
        key = f"net.{self.path}.weight"
        with torch.no_grad():
            for name, value in net.state_dict().items():
                if name != key:
                    target[name].copy_(value)
            grown, old = target[key], net.state_dict()[key]
            grown.zero_()
            m = (grown.shape[-1] - old.shape[-1]) // 2
            centre = (...,) + tuple(slice(m, m + n) for n in old.shape[2:])
            grown[centre] = old
        new.train(net.training)
        return new


@dataclass(frozen=True)
class Widening:
    """The output channels of a convolution, or of the convolutions whose outputs add up (a
    residual stream), doubled (`user_widths`): the network computes exactly what it did."""

    name: str
    source: UserModelArch
    target: UserModelArch
    group: user_widths.Group

    def apply(self, net: UserNetwork, seed: int = 0) -> UserNetwork:
        first = next(net.parameters())
        new = build(self.target, net.input_shape, net.num_outputs).to(first.device)
        with torch.no_grad():
            gen = torch.Generator().manual_seed(seed)
            user_widths.fill(net.net, new.net, self.group, gen)
        new.train(net.training)
        return new


def morphs(arch: UserModelArch) -> list[KernelGrowth | Widening]:
    """Every one-kernel growth of ``arch`` (as last built: its input shape and outputs) up to
    `MAX_KERNEL`, and every convolution's (or residual stream's: `user_widths.Group`) widening
    to twice its channels up to `user_widths.MAX_WIDTH`."""
    shape, n = _SHAPES[(arch.sha256, arch.function)]
    with torch.device("meta"):
        net = build(arch, shape, n)
    out: list[KernelGrowth | Widening] = []
    size, width = dict(arch.kernels), dict(arch.widths)
    for path, conv in convs(net.net):
        k = conv.kernel_size[0]
        if k + 2 > MAX_KERNEL[len(conv.kernel_size)]:
            continue
        target = replace(arch, kernels=tuple(sorted({**size, path: k + 2}.items())))
        out.append(KernelGrowth(f"kernel {path} {k} -> {k + 2}", arch, target, path))
    groups = {g.writers: g for g in widenable(arch, shape, n).values()}
    for writers, group in groups.items():
        c = net.net.get_submodule(writers[0]).out_channels
        if 2 * c <= user_widths.MAX_WIDTH:
            wider = {**width, **dict.fromkeys(writers, 2 * c)}
            target = replace(arch, widths=tuple(sorted(wider.items())))
            name = f"widen {','.join(writers)} {c} -> {2 * c}"
            out.append(Widening(name, arch, target, group))
    return out
