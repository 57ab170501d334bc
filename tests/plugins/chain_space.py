"""A throwaway search space in one file (the registry tests import it): a chain of
convolutions, one kernel size per layer, with one typed setting of its own (``search.depth``).
The smallest useful space: what a new space has to write, and nothing more."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field
from torch import nn

from scinas.errors import UserError
from scinas.spaces import DecisionSpace, SearchSpace
from scinas.spaces.base import SpaceSettings, register_space


@dataclass(frozen=True)
class ChainArch:
    space: ClassVar[str] = "chain"
    kernels: tuple[int, ...]

    def to_dict(self) -> dict:
        return {"space": "chain", "kernels": list(self.kernels)}

    def to_json(self, path) -> None:
        path.write_text(json.dumps(self.to_dict()))


class ChainNet(nn.Module):
    def __init__(self, arch: ChainArch, C_in: int, C: int, num_outputs: int):
        super().__init__()
        layers, c = [], C_in
        for k in arch.kernels:
            layers += [nn.Conv2d(c, C, k, padding=k // 2), nn.BatchNorm2d(C), nn.ReLU()]
            c = C
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(C, num_outputs)

    def forward(self, x):  # (B, C_in, H, W) -> (B, num_outputs), no auxiliary output
        return self.head(self.body(x).mean((2, 3))), None


class ChainSettings(SpaceSettings):
    depth: int = Field(3, ge=1, le=6, description="convolutions in the chain")


@register_space
class ChainSpace(SearchSpace):
    name = "chain"
    description = "a chain of convolutions with a kernel size per layer"
    Settings = ChainSettings

    def from_dict(self, data, source="architecture"):
        kernels = data.get("kernels") if isinstance(data, dict) else None
        if not isinstance(kernels, list) or not all(k in (3, 5) for k in kernels):
            raise UserError(f"{source}: a chain architecture is {{'kernels': [3|5, ...]}}")
        return ChainArch(tuple(kernels))

    def decisions(self, s) -> DecisionSpace:
        names = [f"layer{i}" for i in range(s.space_own.depth)]
        return DecisionSpace(
            "chain",
            tuple((n, (3, 5)) for n in names),
            lambda p: ChainArch(tuple(p[n] for n in names)),
        )

    def build_network(self, arch, t, input_shape, num_outputs):
        return ChainNet(arch, input_shape[0], t.C, num_outputs)
