"""Copying trained tensors between two modules of the same structure: how a derived network
inherits the supernet's weights (`scinas.inherit`; each space maps its own modules through
`scinas.spaces.SearchSpace.inherit_weights`). A leaf module: spaces import it."""

from __future__ import annotations

from torch import nn


def state_leaves(module: nn.Module) -> list[nn.Module]:
    """The submodules that hold tensors of their own (convolutions, BatchNorms, linear layers),
    in definition order."""
    return [
        m
        for m in module.modules()
        if next(m.parameters(recurse=False), None) is not None
        or next(m.buffers(recurse=False), None) is not None
    ]


def copy_weights(src: nn.Module, dst: nn.Module, src_name: str, dst_name: str) -> list:
    """Copy every tensor of ``src`` into the same-role tensor of ``dst`` (the n-th stateful
    submodule of one into the n-th of the other; parameter and buffer names within them equal).
    A BatchNorm without affine parameters (the supernet's) copies into an affine one as weight 1
    and bias 0, which computes the same. ``dst`` without tensors (a pooling op, whose supernet
    twin carries a BatchNorm) takes nothing. Returns (dst tensor name, src tensor name) pairs."""
    a, b = state_leaves(src), state_leaves(dst)
    if not b:
        return []
    if len(a) != len(b):
        raise RuntimeError(f"cannot inherit {dst_name} from {src_name}: different structure")
    names = {id(m): n for n, m in src.named_modules()}
    dst_names = {id(m): n for n, m in dst.named_modules()}
    pairs = []
    for ma, mb in zip(a, b, strict=True):
        ours = dict(ma.named_parameters(recurse=False)) | dict(ma.named_buffers(recurse=False))
        theirs = dict(mb.named_parameters(recurse=False)) | dict(mb.named_buffers(recurse=False))
        for key, tensor in theirs.items():
            where = _join(dst_name, dst_names[id(mb)], key)
            if key in ours:
                if ours[key].shape != tensor.shape:
                    raise RuntimeError(
                        f"cannot inherit {where}: shape {tuple(tensor.shape)} against the "
                        f"supernet's {tuple(ours[key].shape)}"
                    )
                tensor.data.copy_(ours[key].data)
                pairs.append((where, _join(src_name, names[id(ma)], key)))
            elif isinstance(mb, nn.modules.batchnorm._BatchNorm) and key in ("weight", "bias"):
                tensor.data.fill_(1.0 if key == "weight" else 0.0)
    return pairs


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)
