"""Named datasets: the embedded digits, and MNIST / Fashion-MNIST / CIFAR-10 found or downloaded.

Downloads use only the standard library (urllib), land in a temporary file that is renamed
once complete and checksummed, so an interrupted download never leaves a half file behind.
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
from pathlib import Path

from scinas.data.readers import (
    CIFAR10_TEST_FILE,
    CIFAR10_TRAIN_FILES,
    RawData,
    find_idx_files,
    read_cifar_dir,
    read_idx_dir,
    read_npz,
)
from scinas.errors import UserError

__all__ = [
    "CLASS_NAMES",
    "DOWNLOAD_TIMEOUT",
    "FILES",
    "MIRRORS",
    "NAMED_DATASETS",
    "canonical_name",
    "default_data_dir",
    "load_named",
]

log = logging.getLogger(__name__)

NAMED_DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10")

_ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar_10": "cifar10",
}

#: Base URLs tried in order for each downloadable dataset.  Looked up at call time, so tests
#: (and users behind a proxy mirror) can replace them.
MIRRORS: dict[str, tuple[str, ...]] = {
    # torchvision's mirror first: the LeCun site is often down.
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    "cifar10": ("https://www.cs.toronto.edu/~kriz/",),
}

#: Files to download per dataset, with the md5 of the official file.
FILES: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10": {"cifar-10-binary.tar.gz": "c32a1d4ab5d03f1284b67883e8d87530"},
}

DOWNLOAD_TIMEOUT = 30.0  # seconds per connection attempt / read

CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "digits": tuple(str(i) for i in range(10)),
    "mnist": tuple(str(i) for i in range(10)),
    "fashion-mnist": (
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
    "cifar10": (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
}

_CIFAR_DIR = "cifar-10-batches-bin"


def default_data_dir() -> Path:
    """Folder where named datasets are looked for and downloaded to.

    Returns:
        ``$SCINAS_DATA_DIR`` if set, else ``~/.cache/scinas/data``.
    """
    env = os.environ.get("SCINAS_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "scinas" / "data"


def canonical_name(name: str) -> str | None:
    """Return the named dataset ``name`` refers to (case and ``_``/``-`` tolerant), or None."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return key if key in NAMED_DATASETS else None


def load_named(name: str, data_dir: str | os.PathLike | None, download: bool) -> RawData:
    """Load a named dataset, downloading it first if needed and allowed.

    Args:
        name: One of :data:`NAMED_DATASETS`.
        data_dir: Where to look for (and download to) the files; None uses
            :func:`default_data_dir`.  Ignored for ``digits``, which ships with scinas.
        download: Whether a missing dataset may be downloaded.

    Returns:
        The raw arrays, with class names and notes.

    Raises:
        UserError: If the files are missing and cannot be downloaded (the message says where to
            put them by hand).
    """
    if name == "digits":
        raw = _load_digits()
    else:
        root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
        raw = (
            _load_cifar10(root, download) if name == "cifar10" else _load_idx(name, root, download)
        )
    raw.name = name
    raw.class_names = CLASS_NAMES[name]
    return raw


# ------------------------------------------------------------------------------------------ digits


def _load_digits() -> RawData:
    resource = importlib.resources.files("scinas.data").joinpath("digits_8x8.npz")
    with importlib.resources.as_file(resource) as path:
        raw = read_npz(path)
    raw.notes[:] = [
        "embedded scikit-learn digits (8x8, values 0..16), seeded 1437/360 train/test split"
    ]
    return raw


# --------------------------------------------------------------------------------- MNIST-style


def _idx_candidates(name: str, root: Path) -> list[Path]:
    if name == "mnist":
        subs = ["mnist", "MNIST", "MNIST/raw"]
    else:
        subs = ["fashion-mnist", "fashion_mnist", "FashionMNIST", "FashionMNIST/raw"]
    # torchvision's <root>/MNIST/raw layout is accepted too, so an existing cache can be reused.
    return [root / s for s in subs] + [root]


def _load_idx(name: str, root: Path, download: bool) -> RawData:
    for folder in _idx_candidates(name, root):
        if len(find_idx_files(folder)) == 4:
            return read_idx_dir(folder, name)
    target = root / name
    files = FILES[name]
    if not download:
        raise UserError(_missing_message(name, target, list(files), reason="download=False"))
    notes = _download_files(name, target, list(files))
    raw = read_idx_dir(target, name)
    raw.notes[:0] = notes
    return raw


# ---------------------------------------------------------------------------------------- CIFAR-10


def _cifar_candidates(root: Path) -> list[Path]:
    subs = [_CIFAR_DIR, f"cifar10/{_CIFAR_DIR}", f"cifar-10/{_CIFAR_DIR}", "cifar10", "cifar-10"]
    return [root / s for s in subs] + [root]


def _has_cifar(folder: Path) -> bool:
    return all((folder / f).is_file() for f in (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE))


def _load_cifar10(root: Path, download: bool) -> RawData:
    for folder in _cifar_candidates(root):
        if _has_cifar(folder):
            return read_cifar_dir(folder)
    target = root / "cifar10"
    archive = next(iter(FILES["cifar10"]))
    # An archive put there by hand (as the error message suggests) is used without downloading.
    if not (target / archive).is_file() and not download:
        raise UserError(_missing_message("cifar10", target, [archive], reason="download=False"))
    notes = _download_files("cifar10", target, [archive])
    _extract_tar(target / archive, target)
    (target / archive).unlink(missing_ok=True)  # 160 MB we no longer need
    notes.append(f"extracted {archive} into {target / _CIFAR_DIR}")
    if not _has_cifar(target / _CIFAR_DIR):
        raise UserError(
            f"{archive} did not contain the expected {_CIFAR_DIR}/ batches; delete {target} and "
            "try again."
        )
    raw = read_cifar_dir(target / _CIFAR_DIR)
    raw.notes[:0] = notes
    return raw


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


def _missing_message(name: str, target: Path, files: list[str], reason: str) -> str:
    mirror = MIRRORS[name][0]
    return (
        f"dataset '{name}' is not on this machine and was not downloaded ({reason}). "
        f"Download {', '.join(files)} from {mirror} and put {'it' if len(files) == 1 else 'them'} "
        f"in {target}{' (it is extracted automatically)' if name == 'cifar10' else ''}, "
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
            extra = f" (the extracted {_CIFAR_DIR})" if name == "cifar10" else ""
            raise UserError(
                f"could not download '{name}': {'; '.join(failures)} failed, and {why}. "
                f"Put {', '.join(files)} in {target} by hand (download them on a machine with "
                "internet), or pass --data-dir (data_dir=...) pointing at a folder that holds "
                f"the dataset{extra}."
            )
    return notes
