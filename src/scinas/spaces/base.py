"""The search-space protocol and its registry.

A search space is one registered object that knows everything scinas needs about its
architectures; nothing outside ``spaces/`` branches on a space's name or an architecture's type.
Through `SearchSpace` a space:

- reads, validates and writes its architectures as JSON (`from_dict`, ``arch.to_dict()``), and
  from the short forms users type (`parse`: a published name, a benchmark string);
- exposes its decisions (`decisions`), so black-box strategies and rsws sample and mutate them;
- builds its weight-sharing supernet where it has one (`build_supernet`, `arch_record`);
- builds the discrete network of an architecture for any input shape and task head
  (`build_network`), and checks the sizes first (`check_network`), before anything is written;
- describes an architecture for the report (`drawing`) and for diagnostics (`cell_ops`).

Every architecture object carries ``space`` (a class attribute naming its space), which is how
`space_of` finds the space of an architecture without looking at its type.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ..errors import UserError
from ..registry import SPACES

if TYPE_CHECKING:
    import optuna
    from torch import nn

    from ..config import SearchConfig, TrainConfig


@dataclass(frozen=True)
class DecisionSpace:
    """Categorical decisions that define one architecture, and the mapping back to it."""

    name: str
    decisions: tuple[tuple[str, tuple], ...]
    decode: Callable[[dict], Any]
    # an architecture's decisions, None when the choices cannot express it (None: the space
    # cannot place given architectures, e.g. for ``search.start_from``)
    encode: Callable[[Any], dict | None] | None = None

    def sample(self, rng):
        """A uniformly random architecture (``rng``: numpy RandomState)."""
        return self.decode({name: ch[rng.randint(len(ch))] for name, ch in self.decisions})

    def suggest(self, trial: optuna.Trial):
        params = {name: trial.suggest_categorical(name, list(ch)) for name, ch in self.decisions}
        return self.decode(params)


# An edge as the report draws it: (from node, to node, op label; "" for an unlabelled arrow).
DrawnEdge = tuple[str, str, str]


@dataclass(frozen=True)
class Drawing:
    """What the report shows of an architecture: one graph per cell, plus notes in words."""

    cells: tuple[tuple[str, str, tuple[DrawnEdge, ...]], ...] = ()  # (key, title, edges)
    notes: tuple[str, ...] = ()


class SpaceSettings(BaseModel):
    """A space's own settings, set as ``search.KEY`` (read as ``cfg.search.space_own``);
    subclasses add fields (with descriptions: `scinas spaces` shows them) and their checks. A
    key of another space is refused when the user set it."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SearchSpace(ABC):
    """One search space. Subclasses override what their space has; the defaults say "not here"
    with a clear message, so an unsupported (space, strategy) pair is refused up front."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    has_supernet: ClassVar[bool] = False  # a weight-sharing supernet (one-shot strategies)
    has_alphas: ClassVar[bool] = False  # its supernet has architecture parameters to learn
    # its architectures are one network whose convolutions' kernel sizes and dilations can be
    # chosen (``convs``), what the receptive-field search needs
    has_receptive_fields: ClassVar[bool] = False
    Settings: ClassVar[type[SpaceSettings]] = SpaceSettings  # its own ``search.KEY`` settings
    # Shared fields of the search section that only this space defines but strategies read too
    # (the DARTS cell's); another space refuses them when they differ from their defaults.
    settings: ClassVar[tuple[str, ...]] = ()
    # The input dimensions its networks build for: 2 (images; feature vectors are 1×1 images).
    # A space whose networks are written with `scinas.spaces.nd`'s layers adds 1 (series).
    dims: ClassVar[tuple[int, ...]] = (2,)

    # ---- architectures as JSON and text
    @abstractmethod
    def from_dict(self, data: dict, source: str = "architecture"):
        """Parse and validate an architecture from its JSON object (UserError when invalid)."""

    def parse(self, text: str, source: str = "architecture"):
        """An architecture from a short form (a published name, a benchmark string), or None when
        ``text`` is not one of this space's forms."""
        return None

    def named(self) -> list[str]:
        """The names `parse` accepts (published genotypes, hand-designed networks)."""
        return []

    # ---- the config's search section
    def default_ops(self) -> tuple[str, ...]:
        """The candidate ops when ``search.ops`` is unset (() for a space without ops)."""
        return ()

    def valid_ops(self) -> list[str]:
        """Every op name ``search.ops`` may list for this space."""
        return list(self.default_ops())

    def check_search(self, s: SearchConfig) -> None:
        """Cross-field checks of a search section in this space; raises ValueError (pydantic
        turns it into the config's one clear message)."""
        for field in sorted({f for sp in SPACES for f in SPACES.get(sp).settings}):
            if field in self.settings:
                continue
            if getattr(s, field) != type(s).model_fields[field].default:
                owners = [sp for sp in SPACES if field in SPACES.get(sp).settings]
                raise ValueError(
                    f"search.{field}={getattr(s, field)} is a setting of space "
                    f"{' or '.join(owners)}: it applies to the {' and '.join(owners)} space only, "
                    f"not to {self.name} (leave it unset)"
                )
        if s.ops is not None:
            if not self.valid_ops():
                raise ValueError(f"search.ops does not apply to the {self.name} space")
            from ..errors import unknown

            for op in s.ops:
                if op not in self.valid_ops():
                    raise ValueError(str(unknown(f"{self.name} operation", op, self.valid_ops())))
            if len(set(s.ops)) != len(s.ops):
                raise ValueError(f"search.ops {s.ops} names an op twice")
            if all(name == "none" for name in s.ops):
                raise ValueError("search.ops needs at least one op besides 'none'")

    def op_names(self, s: SearchConfig) -> tuple[str, ...]:
        return tuple(s.ops) if s.ops is not None else self.default_ops()

    def adapt_to_input(self, s: SearchConfig, input_shape) -> tuple[SearchConfig, str | None]:
        """The search section adjusted to the data's input shape, and a note saying how (None:
        unchanged). The DARTS space narrows its ops on 1×1 inputs."""
        return s, None

    # ---- black-box strategies, rsws
    @abstractmethod
    def decisions(self, s: SearchConfig) -> DecisionSpace:
        """The categorical decisions of one architecture under the search section ``s``."""

    def smallest(self, s: SearchConfig, cost: Callable[[Any], float]):
        """The architecture of least ``cost`` (e.g. the parameters or FLOPs of its network) among
        the decisions of search section ``s``: a coordinate descent from the first choice of each
        decision, sweeping until no single change lowers the cost. Exact where the cost adds up
        over the decisions (the cell spaces' edges, the baselines' one decision); a space that
        knows better overrides it."""
        space = self.decisions(s)
        params = {name: choices[0] for name, choices in space.decisions}
        seen: dict[tuple, float] = {}

        def value(p: dict) -> float:
            key = tuple(p.values())
            if key not in seen:
                seen[key] = cost(space.decode(p))
            return seen[key]

        best = value(params)
        for _ in range(3):
            improved = False
            for name, choices in space.decisions:
                for choice in choices:
                    trial = {**params, name: choice}
                    if value(trial) < best:
                        params, best, improved = trial, value(trial), True
            if not improved:
                break
        return space.decode(params)

    # ---- weight sharing
    def check_search_sizes(self, s: SearchConfig, input_shape) -> None:  # noqa: B027
        """Refuse (UserError) search sizes (``search.C``, ``layers``...) the space cannot build, for
        the supernet and the low-fidelity networks of black-box candidates alike."""

    def build_supernet(
        self, s: SearchConfig, input_shape, num_outputs: int, device=None
    ) -> nn.Module:
        raise UserError(f"the {self.name} space has no weight-sharing supernet.")

    def supernet_note(self, s: SearchConfig, model, input_shape, device) -> str:
        """A few words for the search log on how the supernet runs (e.g. cell checkpointing)."""
        return ""

    def arch_record(self, model) -> dict:
        """What arch_weights.jsonl keeps per epoch: ``space``, ``ops``, the op weights of each
        cell under its key (`weight_maps`), the raw alphas, and the derived ``genotype``."""
        raise UserError(f"the {self.name} space has no architecture weights to record.")

    def weight_maps(self) -> list[tuple[str, str, str]]:
        """(cell, record key, title) of each cell's op-weight matrix in an `arch_record`; the
        cells are those of `cell_ops`."""
        return []

    # ---- weight inheritance (train.init=supernet, scinas.inherit)
    def inherit_sizes(self, s: SearchConfig, t: TrainConfig) -> TrainConfig:
        """The train section ``t`` with the network sizes of the supernet of ``s``, so that every
        op the derived network keeps has its twin in the supernet."""
        raise UserError(f"the {self.name} space has no supernet to inherit weights from.")

    def inherit_weights(self, supernet: nn.Module, network: nn.Module, arch) -> list:
        """Copy into ``network`` (``arch``'s, built at `inherit_sizes`) the supernet's tensors of
        everything it keeps (`scinas.inherit.copy_weights`); returns the (network tensor,
        supernet tensor) name pairs copied."""
        raise UserError(f"the {self.name} space has no supernet to inherit weights from.")

    # ---- discrete networks
    def check_dims(self, input_shape) -> None:
        """Refuse (UserError) inputs of a dimension this space's networks are not built for,
        naming the spaces that are."""
        d = len(tuple(input_shape)) - 1
        if d in self.dims:
            return
        what = {1: "series", 2: "images"}.get(d, f"{d}-D inputs")
        shape = "×".join(map(str, input_shape))
        able = [n for n in SPACES.names() if d in SPACES.get(n).dims]
        raise UserError(
            f"the {self.name} space builds networks for "
            + " and ".join({1: "series", 2: "images"}[k] for k in self.dims)
            + f" only; the data are {what} ({shape}). Use "
            + " or ".join(f"--space {n}" for n in able)
            + (" (or --genotype resnet1d, resnet_tiny, ...)" if "baseline" in able else "")
            + "."
        )

    def check_network(self, arch, t: TrainConfig, input_shape) -> None:  # noqa: B027
        """Refuse (UserError) sizes the discrete network cannot take; ``arch`` None: the one the
        search will find."""

    @abstractmethod
    def build_network(self, arch, t: TrainConfig, input_shape, num_outputs: int) -> nn.Module:
        """The discrete network of ``arch`` for (C, H, W) inputs and ``num_outputs`` outputs,
        sized by the train section ``t`` where the space is sized by it."""

    def network_summary(self, arch, t: TrainConfig) -> str:
        """How the network of ``arch`` is sized, for the training log."""
        return f"C={t.C} layers={t.layers} auxiliary={t.auxiliary}"

    def planning_stand_in(self):
        """An architecture that stands in for the searched one when a time budget is planned
        before the search (None: the plan waits for the search)."""
        return None

    # ---- describing
    def drawing(self, data: dict) -> Drawing:
        return Drawing()

    def cell_ops(self, data: dict) -> dict[str, list[str]]:
        """The ops of each cell of an architecture (JSON form), first cell the main one."""
        return {}


def register_space(cls: type[SearchSpace]) -> type[SearchSpace]:
    """Class decorator: register one instance of a space under its ``name``."""
    SPACES.register(cls.name, cls())
    return cls


def space_of(arch) -> SearchSpace:
    """The space an architecture belongs to (its ``space`` attribute)."""
    return SPACES.get(arch.space)
