"""MNIST digits for the course: the shipped 5,000-digit subset, full MNIST from its
IDX files, and the official Moving MNIST test file.

Everything works offline with the subset in ``data/mnist_5k.npz`` (500 digits of
each class, see ``data/README.md``). Full MNIST and the official Moving MNIST file
are downloaded on request only -- never at import time -- into the git-ignored
cache (``vdmcourse.course.CACHE_DIR``), each checked against a published checksum
before it is given its final name.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from vdmcourse.course import CACHE_DIR, DATA_DIR

__all__ = [
    "SUBSET_PATH",
    "MNIST_SHA256",
    "MNIST_MIRRORS",
    "MOVING_MNIST_URL",
    "MOVING_MNIST_MD5",
    "MOVING_MNIST_SHAPE",
    "load_mnist_subset",
    "read_idx",
    "download_file",
    "download_mnist",
    "load_mnist",
    "load_moving_mnist_test",
]

SUBSET_PATH = DATA_DIR / "mnist_5k.npz"
_REBUILD = "Rebuild it with `python data/build_mnist_5k.py` (see data/README.md) or restore it with `git checkout data/mnist_5k.npz`."

# SHA-256 of the four gzipped IDX files, as published by several independent
# download scripts (the same values torchvision's md5s describe).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
# yann.lecun.com often refuses downloads; these mirrors serve the same bytes.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

MOVING_MNIST_URL = "http://www.cs.toronto.edu/~nitish/unsupervised_video/mnist_test_seq.npy"
MOVING_MNIST_MD5 = "be083ec986bfe91a449d63653c411eb2"
# Time axis first: (frames, sequences, height, width), uint8, 819,200,128 bytes.
MOVING_MNIST_SHAPE = (20, 10000, 64, 64)

# IDX type codes (third byte of the magic number) -> big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def load_mnist_subset(path: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Load the shipped MNIST subset (5,000 digits, 500 per class).

    Returns ``(images, labels)``: ``images`` uint8 of shape ``(N, 28, 28)`` in
    ``[0, 255]`` (white digit on black), ``labels`` int64 of shape ``(N,)`` in
    ``[0, 9]``. ``path`` defaults to ``data/mnist_5k.npz``; any ``.npz`` with the
    keys ``images`` and ``labels`` in that layout works.
    """
    path = Path(path) if path is not None else SUBSET_PATH
    if not path.is_file():
        raise FileNotFoundError(f"load_mnist_subset: no file at {path}. {_REBUILD}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = {"images", "labels"} - set(archive.files)
            if missing:
                raise ValueError(f"load_mnist_subset: {path} lacks the key(s) {sorted(missing)}. {_REBUILD}")
            images, labels = archive["images"], archive["labels"]
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as error:
        raise ValueError(f"load_mnist_subset: {path} is truncated or corrupt ({error}). {_REBUILD}") from error
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"load_mnist_subset: {path} should hold uint8 images of shape (N, 28, 28); "
            f"got {images.dtype} {images.shape}. {_REBUILD}"
        )
    if labels.shape != (images.shape[0],) or labels.dtype.kind not in "iu":
        raise ValueError(
            f"load_mnist_subset: {path} should hold integer labels of shape ({images.shape[0]},); "
            f"got {labels.dtype} {labels.shape}. {_REBUILD}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(f"load_mnist_subset: labels in {path} should lie in [0, 9]; got {labels.min()}..{labels.max()}. {_REBUILD}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped (``.gz``) or raw.

    Layout: two zero bytes, a type code (0x08 = uint8, ...), the number of
    dimensions, one big-endian uint32 per dimension, then the data, big-endian.
    Returns a numpy array of that shape in native byte order (MNIST images:
    uint8 ``(N, 28, 28)``; labels: uint8 ``(N,)``). A wrong magic number, an
    unknown type code or a byte count that does not match the header raises
    ``ValueError``.
    """
    path = Path(path)
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as error:  # zlib.error: corrupt compressed data
        raise ValueError(f"read_idx: cannot read {path} ({error}); the file is truncated or not an IDX file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"read_idx: {path} does not start with the IDX magic number 0x0000TTDD; got {raw[:4].hex() or 'an empty file'}")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"read_idx: {path} has unknown IDX type code 0x{code:02x}; expected one of {[hex(c) for c in _IDX_DTYPES]}")
    if ndim == 0:
        raise ValueError(f"read_idx: {path} declares 0 dimensions; an IDX array needs at least 1")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"read_idx: {path} is truncated inside its header ({len(raw)} bytes, header needs {header})")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"read_idx: {path} declares shape {shape} of {dtype.name} ({expected} data bytes) "
            f"but holds {len(raw) - header}; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, dest: str | Path, *, sha256: str | None = None, md5: str | None = None) -> Path:
    """Download ``url`` to ``dest``, verifying a checksum before the file gets its name.

    The bytes go to a temporary file next to ``dest``; only when its SHA-256
    (or MD5) matches is it renamed to ``dest``. A wrong checksum or a failed
    transfer deletes the temporary file and raises (``ValueError`` / ``OSError``),
    so ``dest`` is either absent or complete. ``file://`` URLs work too.
    """
    if sha256 is None and md5 is None:
        raise ValueError(f"download_file: give sha256= or md5= for {url}; unverified downloads are refused")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
            shutil.copyfileobj(response, out, length=1 << 20)
        for algorithm, want in (("sha256", sha256), ("md5", md5)):
            if want is not None and (got := _digest(tmp, algorithm)) != want.lower():
                raise ValueError(
                    f"download_file: {url} has {algorithm} {got}, expected {want}; the download is corrupt "
                    "or the server sent another file. Nothing was kept; try again or another mirror."
                )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def download_mnist(cache_dir: str | Path = CACHE_DIR, mirrors: tuple[str, ...] = MNIST_MIRRORS) -> Path:
    """Download the four MNIST IDX files into ``cache_dir / "mnist"`` and return that folder.

    Each file is checked against :data:`MNIST_SHA256`; a file already present
    with the right checksum is kept. Mirrors are tried in order until one serves
    the right bytes. Needs a network; never called by the course on its own.
    """
    folder = Path(cache_dir) / "mnist"
    for name, sha256 in MNIST_SHA256.items():
        dest = folder / name
        if dest.is_file() and _digest(dest, "sha256") == sha256:
            continue
        errors = []
        for mirror in mirrors:
            try:
                download_file(mirror.rstrip("/") + "/" + name, dest, sha256=sha256)
                break
            except (OSError, ValueError) as error:
                errors.append(f"{mirror}: {error}")
        else:
            raise OSError(f"download_mnist: could not fetch {name} from any mirror:\n  " + "\n  ".join(errors))
    return folder


def load_mnist(split: str = "train", cache_dir: str | Path = CACHE_DIR, *, download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Full MNIST from the IDX files in ``cache_dir / "mnist"``.

    ``split`` is ``"train"`` (60,000 digits) or ``"test"`` (10,000). Returns
    ``(images, labels)`` like :func:`load_mnist_subset`: uint8 ``(N, 28, 28)`` in
    ``[0, 255]`` and int64 ``(N,)``. ``download=True`` fetches missing files first.
    """
    if split not in ("train", "test"):
        raise ValueError(f"load_mnist: split must be 'train' or 'test'; got {split!r}")
    folder = download_mnist(cache_dir) if download else Path(cache_dir) / "mnist"
    prefix = "train" if split == "train" else "t10k"
    paths = [folder / f"{prefix}-{kind}-ubyte.gz" for kind in ("images-idx3", "labels-idx1")]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"load_mnist: {path} is missing; call load_mnist(..., download=True) or download_mnist()")
    images, labels = (read_idx(path) for path in paths)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(f"load_mnist: images {images.shape} and labels {labels.shape} in {folder} do not pair up as (N, 28, 28) and (N,)")
    return torch.from_numpy(images.astype(np.uint8)), torch.from_numpy(labels.astype(np.int64))


def load_moving_mnist_test(
    path: str | Path | None = None,
    *,
    download: bool = False,
    sequences: int | None = None,
    as_float: bool = True,
) -> torch.Tensor:
    """The official Moving MNIST test set (Srivastava et al. 2015), batch first.

    The file ``mnist_test_seq.npy`` stores ``(T, N, H, W) = (20, 10000, 64, 64)``
    uint8, **time axis first**; this returns the course layout ``(N, T, 1, H, W)``:
    float32 in ``[0, 1]`` (``as_float=True``) or uint8 in ``[0, 255]``.
    ``sequences`` keeps the first that many sequences (the whole file as float32
    needs 3.3 GB; it is memory-mapped, so only what is kept is read).
    ``path`` defaults to ``CACHE_DIR / "mnist_test_seq.npy"``; ``download=True``
    fetches it (about 800 MB, MD5-checked) when missing. Shape and dtype are
    checked against :data:`MOVING_MNIST_SHAPE` from the file header.

    Note that torchvision's ``MovingMNIST`` splits this file by *frames* (first
    10 as input, last 10 as target), not into train/test sequences.
    """
    path = Path(path) if path is not None else CACHE_DIR / "mnist_test_seq.npy"
    if not path.is_file():
        if not download:
            raise FileNotFoundError(
                f"load_moving_mnist_test: no file at {path}; pass download=True to fetch it "
                f"(about 800 MB) or download {MOVING_MNIST_URL} there yourself"
            )
        download_file(MOVING_MNIST_URL, path, md5=MOVING_MNIST_MD5)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"load_moving_mnist_test: {path} is truncated or not a .npy file ({error}); delete it and download it again") from error
    if array.dtype != np.uint8 or array.shape != tuple(MOVING_MNIST_SHAPE):
        raise ValueError(
            f"load_moving_mnist_test: {path} should hold uint8 of shape {tuple(MOVING_MNIST_SHAPE)} (T, N, H, W); "
            f"got {array.dtype} {array.shape}. Delete it and download it again."
        )
    if sequences is not None:
        if not isinstance(sequences, int) or isinstance(sequences, bool) or not 1 <= sequences <= array.shape[1]:
            raise ValueError(f"load_moving_mnist_test: sequences must be an int in [1, {array.shape[1]}]; got {sequences!r}")
        array = array[:, :sequences]
    video = torch.from_numpy(np.ascontiguousarray(array.transpose(1, 0, 2, 3)))[:, :, None]  # (N, T, 1, H, W)
    return video.float().div_(255) if as_float else video
