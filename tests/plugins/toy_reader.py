"""A throwaway data format in one file (the data registry tests import it): text lines of a
label and 16 pixel values, read as 4×4 images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scinas.data.formats import RawData, Reader, ReadOptions, register_reader


@register_reader("toy")
class ToyReader(Reader):
    description = ".toy text files"

    def recognises(self, path: Path) -> bool:
        return path.is_file() and path.suffix == ".toy"

    def read(self, path: Path, options: ReadOptions) -> RawData:
        rows = np.loadtxt(path, dtype=np.int64, ndmin=2)
        x = rows[:, 1:].reshape(-1, 4, 4).astype(np.uint8)
        return RawData(name=path.stem, arrays={"x_train": x, "y_train": rows[:, 0]})

    def example(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        lines = [" ".join(str(v) for v in [i % 2, *range(i, i + 16)]) for i in range(20)]
        path = folder / "digits.toy"
        path.write_text("\n".join(lines) + "\n")
        return path
