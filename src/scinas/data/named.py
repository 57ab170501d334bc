"""Named datasets as a registry: the embedded digits, and MNIST / Fashion-MNIST / CIFAR-10 found
under a data folder or downloaded there.

Each dataset is one :class:`NamedDataset` entry in :data:`DATASETS`: its names, where its files
may be, how to tell they are there, how to read them and what to download.  Downloads use only
the standard library (urllib), land in a temporary file that is renamed once complete and
checksummed, so an interrupted download never leaves a half file behind.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.resources
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from scinas.data.cifar import CIFAR10_CLASS_NAMES, has_cifar_files, read_cifar_dir
from scinas.data.formats import RawData
from scinas.data.idx import find_idx_files, read_idx_dir
from scinas.data.npz import read_npz
from scinas.errors import UserError, unknown
from scinas.registry import Registry

__all__ = [
    "DATASETS",
    "DOWNLOAD_TIMEOUT",
    "FILES",
    "MIRRORS",
    "NAMED_DATASETS",
    "NamedDataset",
    "canonical_name",
    "default_data_dir",
    "find_dataset",
    "load_named",
    "register_dataset",
]

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 30.0  # seconds per connection attempt / read

#: Base URLs tried in order for each downloadable dataset, and the files to download with the
#: md5 of the official file.  Filled from the entries, but looked up at call time, so tests (and
#: users behind a proxy mirror) can replace them.
MIRRORS: dict[str, tuple[str, ...]] = {}
FILES: dict[str, dict[str, str]] = {}


def _never(folder: Path) -> bool:
    return False


@dataclass(frozen=True)
class NamedDataset:
    """One named dataset.

    Attributes:
        name: The canonical name (``--data NAME``).
        class_names: Names of the classes, in label order.
        read: Reads the folder the files were found in (or the bundled file).
        has_files: Whether a folder holds everything ``read`` needs.
        aliases: Other spellings (lower case) that mean this dataset.
        folders: Subfolders of the data folder where the files are looked for, in order; the
            data folder itself is tried last.
        files: Files to download (file name -> md5 of the official file).
        mirrors: Base URLs tried in order for the downloads.
        download_to: Subfolder of the data folder the files are downloaded to (default: name).
        archive_folder: For a downloaded archive: the folder it extracts to, which is read.
        bundled: A file shipped in the ``scinas.data`` package: no data folder, no download.
        description: Replaces the reader's notes (bundled data, whose path says nothing).
    """

    name: str
    class_names: tuple[str, ...]
    read: Callable[[Path], RawData]
    has_files: Callable[[Path], bool] = _never
    aliases: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)
    mirrors: tuple[str, ...] = ()
    download_to: str = ""
    archive_folder: str = ""
    bundled: str = ""
    description: str = ""

    def candidates(self, root: Path) -> list[Path]:
        """The folders under the data folder ``root`` where the files are looked for."""
        return [root / s for s in self.folders] + [root]

    def locate(self, data_dir: str | os.PathLike | None) -> Path | None:
        """The folder that holds the files under ``data_dir`` (None: the default), or None.

        A bundled dataset is always there: its file is returned.
        """
        if self.bundled:
            return Path(str(importlib.resources.files("scinas.data").joinpath(self.bundled)))
        root = _root(data_dir)
        return next((f for f in self.candidates(root) if self.has_files(f)), None)

    def load(self, data_dir: str | os.PathLike | None, download: bool) -> RawData:
        """Read the dataset, downloading it first if it is missing and ``download`` allows.

        Raises:
            UserError: If the files are missing and cannot be downloaded (the message says
                where to put them by hand).
        """
        if self.bundled:
            resource = importlib.resources.files("scinas.data").joinpath(self.bundled)
            with importlib.resources.as_file(resource) as path:
                raw = self.read(path)
        else:
            raw = self._find_or_fetch(_root(data_dir), download)
        if self.description:
            raw.notes[:] = [self.description]
        raw.name = self.name
        raw.class_names = self.class_names
        return raw

    def _find_or_fetch(self, root: Path, download: bool) -> RawData:
        for folder in self.candidates(root):
            if self.has_files(folder):
                return self.read(folder)
        target = root / (self.download_to or self.name)
        files = list(FILES[self.name])
        # Files put there by hand (as the error message suggests) are used without downloading.
        if not download and any(not (target / f).is_file() for f in files):
            raise UserError(_missing_message(self, target, files, reason="download=False"))
        notes = _download_files(self.name, target, files)
        folder = target
        if self.archive_folder:
            for archive in files:
                _extract_tar(target / archive, target)
                (target / archive).unlink(missing_ok=True)  # no longer needed (CIFAR-10: 160 MB)
                notes.append(f"extracted {archive} into {target / self.archive_folder}")
            folder = target / self.archive_folder
            if not self.has_files(folder):
                raise UserError(
                    f"{', '.join(files)} did not contain the expected {self.archive_folder}/ "
                    f"files; delete {target} and try again."
                )
        raw = self.read(folder)
        raw.notes[:0] = notes
        return raw


#: Named datasets by canonical name.
DATASETS: Registry[NamedDataset] = Registry("dataset")


def register_dataset(dataset: NamedDataset) -> NamedDataset:
    """Register ``dataset`` under its name, and its downloads in :data:`MIRRORS`/:data:`FILES`."""
    DATASETS.register(dataset.name, dataset)
    if dataset.files:
        MIRRORS[dataset.name] = tuple(dataset.mirrors)
        FILES[dataset.name] = dict(dataset.files)
    return dataset


def _root(data_dir: str | os.PathLike | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def default_data_dir() -> Path:
    """Folder where named datasets are looked for and downloaded to.

    Returns:
        ``$SCINAS_DATA_DIR`` if set, else ``~/.cache/scinas/data``.
    """
    env = os.environ.get("SCINAS_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "scinas" / "data"


def find_dataset(name: str) -> NamedDataset | None:
    """The named dataset ``name`` refers to (case insensitive, or an alias), or None."""
    key = name.strip().lower()
    if key in DATASETS:
        return DATASETS.get(key)
    return next((DATASETS.get(n) for n in DATASETS if key in DATASETS.get(n).aliases), None)


def canonical_name(name: str) -> str | None:
    """Return the named dataset ``name`` refers to (case and ``_``/``-`` tolerant), or None."""
    dataset = find_dataset(name)
    return dataset.name if dataset is not None else None


def load_named(name: str, data_dir: str | os.PathLike | None, download: bool) -> RawData:
    """Load a named dataset, downloading it first if needed and allowed.

    Args:
        name: A name in :data:`DATASETS` (or an alias).
        data_dir: Where to look for (and download to) the files; None uses
            :func:`default_data_dir`.  Ignored for ``digits``, which ships with scinas.
        download: Whether a missing dataset may be downloaded.

    Returns:
        The raw arrays, with class names and notes.

    Raises:
        UserError: If the name is unknown, or the files are missing and cannot be downloaded
            (the message says where to put them by hand).
    """
    dataset = find_dataset(name)
    if dataset is None:
        raise unknown("dataset", name, DATASETS.names())
    return dataset.load(data_dir, download)


# ------------------------------------------------------------------------------------ archives


def _extract_tar(archive: Path, target: Path) -> None:
    """Extract ``archive`` into ``target`` safely and atomically (via a temporary folder)."""
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
    try:
        try:
            with tarfile.open(archive, "r:*") as tar:
                if hasattr(tarfile, "data_filter"):
                    # Refuses absolute paths, '..', links out of the folder and device files.
                    tar.extractall(tmp, filter="data")
                else:  # pragma: no cover - Python without PEP 706 backport
                    for member in tar.getmembers():
                        dest = (tmp / member.name).resolve()
                        if not (member.isfile() or member.isdir()) or tmp.resolve() not in (
                            dest,
                            *dest.parents,
                        ):
                            raise UserError(f"{archive} has an unsafe entry: {member.name}")
                    tar.extractall(tmp)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise UserError(f"could not extract {archive} ({e}); delete it and try again.") from e
        for entry in tmp.iterdir():
            dest = target / entry.name
            if dest.exists():
                shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
            entry.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------- download


def _missing_message(dataset: NamedDataset, target: Path, files: list[str], reason: str) -> str:
    mirror = MIRRORS[dataset.name][0]
    extracted = " (it is extracted automatically)" if dataset.archive_folder else ""
    return (
        f"dataset '{dataset.name}' is not on this machine and was not downloaded ({reason}). "
        f"Download {', '.join(files)} from {mirror} and put {'it' if len(files) == 1 else 'them'} "
        f"in {target}{extracted}, "
        "or pass --data-dir (data_dir=...) pointing at a folder that holds the dataset."
    )


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` through a temporary file in the same folder."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as r:
            shutil.copyfileobj(r, out, 1 << 20)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _download_files(name: str, target: Path, files: list[str]) -> list[str]:
    """Download the missing ``files`` of dataset ``name`` into ``target``, verifying md5s."""
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"cannot create {target} to download '{name}' ({e}); pass --data-dir (data_dir=...) "
            "pointing at a writable folder."
        ) from e
    notes = []
    for fname in files:
        dest = target / fname
        if dest.is_file():
            continue
        expected = FILES[name][fname]
        failures = []
        for base in MIRRORS[name]:
            url = base.rstrip("/") + "/" + fname
            log.info("downloading %s", url)
            try:
                _fetch(url, dest)
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
                failures.append(f"{url} ({getattr(e, 'reason', None) or e})")
                continue
            got = _md5(dest)
            if got != expected:
                dest.unlink(missing_ok=True)
                failures.append(f"{url} (md5 {got} != expected {expected}: corrupt download)")
                continue
            notes.append(f"downloaded {url} (md5 verified)")
            break
        else:
            whys = []
            if any("corrupt download" in f for f in failures):
                whys.append("a download was corrupt (checksum mismatch)")
            if not all("corrupt download" in f for f in failures):
                whys.append("this machine seems to be offline (or the server is unreachable)")
            why = " and ".join(whys)
            folder = DATASETS.get(name).archive_folder
            extra = f" (the extracted {folder})" if folder else ""
            raise UserError(
                f"could not download '{name}': {'; '.join(failures)} failed, and {why}. "
                f"Put {', '.join(files)} in {target} by hand (download them on a machine with "
                "internet), or pass --data-dir (data_dir=...) pointing at a folder that holds "
                f"the dataset{extra}."
            )
    return notes


# --------------------------------------------------------------------------------------- entries


_DIGITS = tuple(str(i) for i in range(10))


def _has_idx(folder: Path) -> bool:
    return len(find_idx_files(folder)) == 4


register_dataset(
    NamedDataset(
        name="digits",
        class_names=_DIGITS,
        read=read_npz,
        bundled="digits_8x8.npz",
        description=(
            "embedded scikit-learn digits (8x8, values 0..16), seeded 1437/360 train/test split"
        ),
    )
)

# torchvision's <root>/MNIST/raw layout is accepted too, so an existing cache can be reused.
register_dataset(
    NamedDataset(
        name="mnist",
        class_names=_DIGITS,
        read=read_idx_dir,
        has_files=_has_idx,
        folders=("mnist", "MNIST", "MNIST/raw"),
        files={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        # torchvision's mirror first: the LeCun site is often down.
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
    )
)

register_dataset(
    NamedDataset(
        name="fashion-mnist",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        read=read_idx_dir,
        has_files=_has_idx,
        aliases=("fashion_mnist", "fashionmnist"),
        folders=("fashion-mnist", "fashion_mnist", "FashionMNIST", "FashionMNIST/raw"),
        files={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    )
)

_CIFAR_DIR = "cifar-10-batches-bin"

register_dataset(
    NamedDataset(
        name="cifar10",
        class_names=CIFAR10_CLASS_NAMES,
        read=read_cifar_dir,
        has_files=has_cifar_files,
        aliases=("cifar-10", "cifar_10"),
        folders=(
            _CIFAR_DIR,
            f"cifar10/{_CIFAR_DIR}",
            f"cifar-10/{_CIFAR_DIR}",
            "cifar10",
            "cifar-10",
        ),
        files={"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        download_to="cifar10",
        archive_folder=_CIFAR_DIR,
    )
)

#: The names registered here (the registry may grow; :func:`canonical_name` asks it).
NAMED_DATASETS: tuple[str, ...] = tuple(DATASETS.names())
