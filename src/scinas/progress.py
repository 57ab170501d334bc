"""Progress output: rich bars on a terminal, plain one-line-per-epoch logs otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


class Reporter:
    """Prints run progress to stderr. ``quiet`` silences everything; bars only on a TTY."""

    def __init__(self, quiet: bool = False, bars: bool | None = None):
        self.quiet = quiet
        self.bars = (not quiet) and (sys.stderr.isatty() if bars is None else bars)
        self.t0 = time.perf_counter()

    def log(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.perf_counter() - self.t0
            print(f"[{elapsed:7.1f}s] {message}", file=sys.stderr, flush=True)

    def track(self, items: Iterable[T], total: int, description: str) -> Iterator[T]:
        """Iterate ``items`` with a transient progress bar (with time left) when on a terminal."""
        if not self.bars:
            yield from items
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, transient=True) as progress:
            task = progress.add_task(description, total=total)
            for item in items:
                yield item
                progress.advance(task)
