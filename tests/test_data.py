import gzip
import re
import zlib
from pathlib import Path

import pytest
import torch

from aann import data
from aann.data import CorruptDataError, MissingDataError, Split


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty data root and a private mirror, instead of the machine's real ones."""
    root, mirror = tmp_path / "data", tmp_path / "mirror"
    (mirror / "MNIST" / "raw").mkdir(parents=True)
    monkeypatch.setenv("AANN_DATA", str(root))
    monkeypatch.setattr(data, "mirror_dirs", lambda: [mirror])
    return root, mirror


def _real_mnist_gz():
    mirror = Path(__file__).resolve().parents[2] / "shared" / "data" / "MNIST" / "raw"
    if not (mirror / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip("the offline MNIST mirror is not on this machine")
    return mirror


def test_missing_file_names_it_and_says_how(isolated):
    with pytest.raises(MissingDataError, match=r"train-images-idx3-ubyte.*missing.*To get it"):
        data.prepare("mnist", download=False)


def test_corrupted_mirror_file_is_refused_with_its_path(isolated):
    root, mirror = isolated
    bad = mirror / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\x00\x00\x08\x03 not the MNIST you are looking for")
    with pytest.raises(CorruptDataError, match=str(bad)):
        data.prepare("mnist")
    assert not (root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()  # nothing half-written


def test_truncated_gzip_is_refused(isolated):
    _, mirror = isolated
    src = _real_mnist_gz() / "t10k-labels-idx1-ubyte.gz"
    bad = mirror / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    bad.write_bytes(src.read_bytes()[:2000])
    with pytest.raises(CorruptDataError, match="train-images-idx3-ubyte.gz"):
        data.prepare("mnist")


def _flipped(blob: bytes, offset: int) -> bytes:
    b = bytearray(blob)
    b[offset] ^= 0xFF
    return bytes(b)


def _offsets(n: int) -> dict[str, int]:
    """Where a byte is flipped: early in the deflate stream, its middle, the trailer's CRC and size."""
    return {"early": 100, "middle": n // 2, "crc": n - 6, "size": n - 2}


@pytest.mark.parametrize("where", ["early", "middle", "crc", "size", "truncated"])
@pytest.mark.parametrize("filename", ["t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"])
def test_every_damaged_gzip_is_named(isolated, filename, where):
    """A damaged .gz in a mirror fails with CorruptDataError naming it, wherever the damage is: a
    garbled deflate stream (zlib.error), a bad CRC or length (gzip), a short file (EOFError) or
    contents that decompress but are wrong (md5)."""
    root, mirror = isolated
    good = (_real_mnist_gz() / filename).read_bytes()
    bad = mirror / "MNIST" / "raw" / filename
    for src in _real_mnist_gz().glob("*.gz"):  # every other file intact
        (mirror / "MNIST" / "raw" / src.name).write_bytes(src.read_bytes())
    bad.write_bytes(good[: len(good) * 2 // 3] if where == "truncated" else _flipped(good, _offsets(len(good))[where]))
    with pytest.raises(CorruptDataError, match=re.escape(str(bad)) + ".*Replace it"):
        data.prepare("mnist")
    assert not (root / "MNIST" / "raw" / filename.removesuffix(".gz")).exists()
    assert not list((root / "MNIST" / "raw").glob("*.part"))


def _cifar_mirror():
    folder = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar-10-batches-py"
    if not (folder / "test_batch").is_file():
        pytest.skip("no CIFAR-10 copy on this machine")
    return folder


@pytest.mark.parametrize("where", ["early", "middle", "end", "truncated"])
def test_a_damaged_cifar_batch_is_named(isolated, where):
    """CIFAR-10's pickled batches are checked file by file: a flipped byte or a short file is named."""
    root, _ = isolated
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for src in _cifar_mirror().iterdir():
        (folder / src.name).symlink_to(src)
    bad = folder / "test_batch"
    good = bad.read_bytes()
    bad.unlink()
    offset = {"early": 100, "middle": len(good) // 2, "end": len(good) - 1}.get(where)
    bad.write_bytes(good[: len(good) // 2] if offset is None else _flipped(good, offset))
    with pytest.raises(CorruptDataError, match=re.escape(str(bad)) + ".*corrupted.*download=True"):
        data.prepare("cifar10")


def test_an_unreadable_file_is_named(isolated, monkeypatch):
    root, _ = isolated
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"unreadable")

    def denied(path, chunk=0):  # as root a chmod would not stop the read: the OS's answer, staged
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(data, "md5", denied)
    with pytest.raises(CorruptDataError, match=re.escape(str(raw / "train-images-idx3-ubyte")) + ".*cannot be read"):
        data.prepare("mnist")


def test_a_file_damaged_after_its_check_is_named(isolated, monkeypatch):
    """torchvision reads the files after their md5 passed; should that read still fail, the error
    names the folder and the way out instead of surfacing torchvision's bare exception."""
    root, mirror = isolated
    for src in _real_mnist_gz().glob("*.gz"):
        (mirror / "MNIST" / "raw" / src.name).write_bytes(src.read_bytes())

    class Broken:
        def __init__(self, **kwargs):
            raise zlib.error("Error -3 while decompressing data: invalid distance too far back")

    monkeypatch.setattr(data, "_torchvision_class", lambda name: Broken)
    with pytest.raises(CorruptDataError, match=f"mnist: torchvision cannot read the files under {re.escape(str(root))}"):
        data.torchvision_dataset("mnist", train=False)


def test_corrupted_extracted_file_is_refused(isolated):
    root, _ = isolated
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"garbage")
    with pytest.raises(CorruptDataError, match=r"train-images-idx3-ubyte is corrupted.*md5"):
        data.prepare("mnist")


def test_mirror_gz_is_extracted_and_checked(isolated):
    root, mirror = isolated
    for src in _real_mnist_gz().glob("*.gz"):
        (mirror / "MNIST" / "raw" / src.name).write_bytes(src.read_bytes())
    assert data.prepare("mnist") == root
    assert data.md5(root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte") == "27ae3e4e09519cfbb04c329615203637"
    assert not list((root / "MNIST" / "raw").glob("*.part"))


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown data set 'svhn'"):
        data.prepare("svhn")


def test_real_splits_are_fixed_disjoint_and_scaled():
    a = data.load_splits("mnist", val_size=5000, seed=0)
    b = data.load_splits("mnist", val_size=5000, seed=0)
    assert [len(a[k]) for k in ("train", "val", "test")] == [55000, 5000, 10000]
    assert torch.equal(a["val"].x, b["val"].x) and torch.equal(a["val"].y, b["val"].y)
    assert a["train"].x.dtype == torch.float32 and 0 <= a["train"].x.min() and a["train"].x.max() <= 1
    # train + val is a partition of the official training set: same images, none twice
    full = data.torchvision_dataset("mnist", train=True).data.float().div(255).sum((1, 2))
    ours = torch.cat([a["train"].x, a["val"].x]).sum((1, 2, 3))
    assert torch.allclose(ours.sort().values, full.sort().values)
    small = data.load_splits("fashion_mnist", train_size=1000)
    assert len(small["train"]) == 1000 and small["train"].x.shape[1:] == (1, 28, 28)


def test_subset_is_seeded():
    s = Split(torch.arange(100.0).view(100, 1), torch.arange(100))
    assert torch.equal(s.subset(10, seed=1).y, s.subset(10, seed=1).y)
    assert not torch.equal(s.subset(10, seed=1).y, s.subset(10, seed=2).y)
    assert len(s.subset(1000)) == 100


def test_cifar10_through_torchvision_with_per_file_md5():
    try:
        root = data.prepare("cifar10")
    except MissingDataError:
        pytest.skip("no CIFAR-10 copy on this machine")
    ds = data.torchvision_dataset("cifar10", train=False)
    assert len(ds) == 10000 and Path(root, "cifar-10-batches-py").is_dir()


def test_imagenet_sample_labels_come_from_csv():
    sample = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"
    if not sample.is_dir():
        pytest.skip("no ImageNet sample on this machine")
    ds = data.imagenet_folder(sample, sample / "labels.csv")
    assert len(ds) == 100
    assert sorted(set(ds.targets)) == list(range(0, 1000, 10))
    with pytest.raises(MissingDataError, match="nowhere"):
        data.imagenet_folder(sample / "nowhere")
