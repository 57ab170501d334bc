"""The old home of the array-format readers, kept so existing imports keep working.

Each format now lives in its own module (:mod:`scinas.data.npz`, :mod:`scinas.data.idx`,
:mod:`scinas.data.cifar`), registered in :data:`scinas.data.formats.READERS`; import from those.
"""

from __future__ import annotations

from scinas.data.cifar import (
    CIFAR10_TEST_FILE,
    CIFAR10_TRAIN_FILES,
    read_cifar_binary,
    read_cifar_dir,
)
from scinas.data.formats import SPLITS, RawData
from scinas.data.idx import IDX_DTYPES, find_idx_files, is_idx_name, read_idx, read_idx_dir
from scinas.data.images import IMAGE_SUFFIXES
from scinas.data.layouts import detect_layout, to_nchw
from scinas.data.npz import read_npz

__all__ = [
    "CIFAR10_TEST_FILE",
    "CIFAR10_TRAIN_FILES",
    "IDX_DTYPES",
    "IMAGE_SUFFIXES",
    "SPLITS",
    "RawData",
    "detect_layout",
    "find_idx_files",
    "is_idx_name",
    "read_cifar_binary",
    "read_cifar_dir",
    "read_idx",
    "read_idx_dir",
    "read_npz",
    "to_nchw",
]
