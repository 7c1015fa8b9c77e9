import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch

from vdmcourse.data import mnist
from vdmcourse.data import download_file, download_mnist, load_mnist, load_mnist_subset, load_moving_mnist_test, read_idx


def write_idx(path, array: np.ndarray, code: int = 0x08, *, magic: bytes | None = None, gz: bool = False) -> None:
    header = magic if magic is not None else bytes([0, 0, code, array.ndim])
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def sha256_of(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the shipped subset ---------------------------------------------------------------


def test_shipped_subset_has_500_digits_of_each_class():
    images, labels = load_mnist_subset()
    assert images.shape == (5000, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (5000,) and labels.dtype == torch.int64
    assert torch.equal(labels.bincount(), torch.full((10,), 500))
    # Real handwriting: white strokes on black, every image has ink and a black border.
    assert images.amax(dim=(1, 2)).min() > 200 and images[:, 0, :].max() < 64


def test_truncated_subset_is_refused_with_how_to_rebuild(tmp_path):
    broken = tmp_path / "mnist_5k.npz"
    broken.write_bytes(mnist.SUBSET_PATH.read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated or corrupt.*build_mnist_5k.py"):
        load_mnist_subset(broken)
    with pytest.raises(FileNotFoundError, match="build_mnist_5k.py"):
        load_mnist_subset(tmp_path / "missing.npz")


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"images": np.zeros((3, 28, 28), np.uint8)}, r"lacks the key\(s\) \['labels'\]"),
        ({"images": np.zeros((3, 28, 28), np.float32), "labels": np.zeros(3, np.uint8)}, "uint8 images of shape"),
        ({"images": np.zeros((3, 28, 27), np.uint8), "labels": np.zeros(3, np.uint8)}, "uint8 images of shape"),
        ({"images": np.zeros((3, 28, 28), np.uint8), "labels": np.zeros(4, np.uint8)}, r"integer labels of shape \(3,\)"),
        ({"images": np.zeros((3, 28, 28), np.uint8), "labels": np.full(3, 12, np.uint8)}, r"should lie in \[0, 9\]"),
    ],
)
def test_subset_with_wrong_contents_is_refused(tmp_path, arrays, words):
    path = tmp_path / "subset.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=words):
        load_mnist_subset(path)


# -- IDX files ------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_read_idx_reads_images_and_labels(tmp_path, gz):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("images.gz" if gz else "images")
    write_idx(path, images, gz=gz)
    assert np.array_equal(read_idx(path), images)
    labels = np.array([7, 2, 1], dtype=np.uint8)
    write_idx(tmp_path / "labels", labels)
    assert np.array_equal(read_idx(tmp_path / "labels"), labels)


def test_read_idx_converts_big_endian_types(tmp_path):
    values = np.array([[1.5, -2.0], [1e6, 0.25]], dtype=np.float32)
    write_idx(tmp_path / "floats", values, code=0x0D)
    out = read_idx(tmp_path / "floats")
    assert out.dtype == np.float32 and out.dtype.isnative and np.array_equal(out, values)
    ints = np.array([1, -70000, 2**30], dtype=np.int32)
    write_idx(tmp_path / "ints", ints, code=0x0C)
    assert np.array_equal(read_idx(tmp_path / "ints"), ints)


def test_read_idx_refuses_a_wrong_magic_number(tmp_path):
    write_idx(tmp_path / "bad", np.zeros((2, 2), np.uint8), magic=bytes([1, 0, 8, 2]))
    with pytest.raises(ValueError, match="magic number"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "code", np.zeros((2, 2), np.uint8), magic=bytes([0, 0, 0x42, 2]))
    with pytest.raises(ValueError, match="unknown IDX type code 0x42"):
        read_idx(tmp_path / "code")


def test_read_idx_refuses_truncated_files(tmp_path):
    path = tmp_path / "images"
    write_idx(path, np.ones((4, 5, 5), np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(ValueError, match=r"declares shape \(4, 5, 5\).*holds 93"):
        read_idx(path)
    path.write_bytes(data[:10])
    with pytest.raises(ValueError, match="truncated inside its header"):
        read_idx(path)
    gz = tmp_path / "images.gz"
    gz.write_bytes(gzip.compress(data)[:-12])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(gz)


def test_read_idx_refuses_dimensions_that_do_not_match_the_data(tmp_path):
    path = tmp_path / "images"
    write_idx(path, np.ones((4, 5, 5), np.uint8), magic=bytes([0, 0, 8, 2]))  # claims 2 dims, writes 3
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(path)
    write_idx(path, np.ones(3, np.uint8), magic=bytes([0, 0, 8, 0]))
    with pytest.raises(ValueError, match="0 dimensions"):
        read_idx(path)


# -- checksummed downloads (local file:// URLs; no network) ---------------------------


def test_download_file_verifies_and_renames(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"moving digits" * 1000)
    dest = tmp_path / "cache" / "copy.bin"
    assert download_file(source.as_uri(), dest, sha256=sha256_of(source)) == dest
    assert dest.read_bytes() == source.read_bytes()
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    assert download_file(source.as_uri(), tmp_path / "cache" / "md5.bin", md5=md5).is_file()


def test_wrong_checksum_raises_and_leaves_no_file(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"not what you expected")
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="sha256 .* expected 0000"):
        download_file(source.as_uri(), cache / "copy.bin", sha256="0" * 64)
    assert list(cache.iterdir()) == []
    with pytest.raises(ValueError, match="unverified downloads are refused"):
        download_file(source.as_uri(), cache / "copy.bin")


def test_failed_transfer_leaves_no_file(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(OSError):
        download_file((tmp_path / "nowhere.bin").as_uri(), cache / "copy.bin", sha256="0" * 64)
    assert list(cache.iterdir()) == []


def test_download_mnist_tries_mirrors_and_load_mnist_reads_the_files(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 4)):
        write_idx(mirror / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz=True)
        write_idx(mirror / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8), gz=True)
    checksums = {name: sha256_of(mirror / name) for name in mnist.MNIST_SHA256}
    monkeypatch.setattr(mnist, "MNIST_SHA256", checksums)
    cache = tmp_path / "cache"
    broken_mirror = (tmp_path / "empty").as_uri()
    folder = download_mnist(cache, mirrors=(broken_mirror, mirror.as_uri()))
    assert sorted(p.name for p in folder.iterdir()) == sorted(checksums)
    images, labels = load_mnist("test", cache)
    assert images.shape == (4, 28, 28) and images.dtype == torch.uint8 and labels.tolist() == [0, 1, 2, 3]
    with pytest.raises(OSError, match="could not fetch"):
        download_mnist(tmp_path / "other", mirrors=(broken_mirror,))
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_mnist("train", tmp_path / "other")
    with pytest.raises(ValueError, match="split must be"):
        load_mnist("validation", cache)


def test_mnist_checksums_are_sha256_hex():
    assert len(mnist.MNIST_SHA256) == 4
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in mnist.MNIST_SHA256.values())


# -- the official Moving MNIST test file (a tiny stand-in with the same layout) --------


@pytest.fixture
def fake_moving_mnist(tmp_path, monkeypatch):
    shape = (3, 5, 4, 4)  # (T, N, H, W), time first like mnist_test_seq.npy
    array = np.arange(np.prod(shape), dtype=np.int64).reshape(shape) % 256
    path = tmp_path / "mnist_test_seq.npy"
    np.save(path, array.astype(np.uint8))
    monkeypatch.setattr(mnist, "MOVING_MNIST_SHAPE", shape)
    return path, array.astype(np.uint8)


def test_moving_mnist_test_file_is_returned_batch_first(fake_moving_mnist):
    path, array = fake_moving_mnist
    video = load_moving_mnist_test(path)
    assert video.shape == (5, 3, 1, 4, 4) and video.dtype == torch.float32
    assert 0 <= video.min() and video.max() <= 1
    # Sequence 2, frame 1 of the file is array[1, 2].
    torch.testing.assert_close(video[2, 1, 0], torch.from_numpy(array[1, 2]).float() / 255)
    raw = load_moving_mnist_test(path, sequences=2, as_float=False)
    assert raw.shape == (2, 3, 1, 4, 4) and raw.dtype == torch.uint8
    assert torch.equal(raw[1, 2, 0], torch.from_numpy(array[2, 1]))


def test_moving_mnist_test_file_with_wrong_layout_is_refused(fake_moving_mnist, tmp_path):
    path, array = fake_moving_mnist
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, array.transpose(1, 0, 2, 3))
    with pytest.raises(ValueError, match=r"uint8 of shape \(3, 5, 4, 4\) \(T, N, H, W\)"):
        load_moving_mnist_test(wrong)
    np.save(wrong, array.astype(np.float32))
    with pytest.raises(ValueError, match="should hold uint8"):
        load_moving_mnist_test(wrong)
    wrong.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="truncated"):
        load_moving_mnist_test(wrong)
    with pytest.raises(ValueError, match="sequences must be"):
        load_moving_mnist_test(path, sequences=6)
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_moving_mnist_test(tmp_path / "absent.npy")


def test_moving_mnist_download_checks_md5(fake_moving_mnist, tmp_path, monkeypatch):
    path, _ = fake_moving_mnist
    monkeypatch.setattr(mnist, "MOVING_MNIST_URL", path.as_uri())
    monkeypatch.setattr(mnist, "MOVING_MNIST_MD5", hashlib.md5(path.read_bytes()).hexdigest())
    video = load_moving_mnist_test(tmp_path / "cache" / "seq.npy", download=True)
    assert video.shape == (5, 3, 1, 4, 4)
    monkeypatch.setattr(mnist, "MOVING_MNIST_MD5", "f" * 32)
    with pytest.raises(ValueError, match="md5"):
        load_moving_mnist_test(tmp_path / "cache2" / "seq.npy", download=True)
    assert list((tmp_path / "cache2").iterdir()) == []


def test_official_moving_mnist_facts():
    assert mnist.MOVING_MNIST_SHAPE == (20, 10000, 64, 64)
    assert mnist.MOVING_MNIST_MD5 == "be083ec986bfe91a449d63653c411eb2"
    assert int(np.prod(mnist.MOVING_MNIST_SHAPE)) + 128 == 819_200_128  # data + .npy header
