"""One small name -> object registry, shared by ops, strategies and presets, and the registries
the config schema reads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

from .errors import unknown

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; unknown names raise a UserError that suggests the closest name."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> T:
        """Remove ``name`` (for tests that register a throwaway entry); returns its object."""
        return self._items.pop(name)

    def decorator(self, name: str) -> Callable[[T], T]:
        """``@REG.decorator("name")`` registers the decorated object under ``name``."""
        return lambda item: self.register(name, item)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise unknown(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)


if TYPE_CHECKING:
    from .spaces.base import SearchSpace

# The registries the config schema checks names against live in the core, so config.py imports no
# plugin: each space or strategy module fills its entry on import (`scinas/__init__` imports them
# all before any config is validated).
SPACES: Registry[SearchSpace] = Registry("search space")
# name -> strategy factory: a `SearchStrategy` subclass (one-shot) or a black-box entry; each
# has ``name``, ``kind``, ``Settings``, ``derive_kinds``, ``check_search`` and makes a strategy
# when called
STRATEGIES: Registry = Registry("strategy")
#: Task classes by name (`scinas.tasks`), in the order ``--task`` lists them.
TASKS: Registry = Registry("task")
