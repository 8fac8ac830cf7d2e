"""Data sets through torchvision, found offline first, checked, and held as tensors.

Lookup order for every data set (``data/README.md`` says the same for readers):

1. ``$AANN_DATA``: a folder in torchvision's layout (``MNIST/raw``, ``FashionMNIST/raw``,
   ``cifar-10-batches-py``). When set, it is also where files are extracted or downloaded.
2. Offline mirrors, found without configuration when present: ``$AANN_MIRROR`` (folders separated
   by ``os.pathsep``), the project's ``../shared/data`` and Debian's ``/usr/share/datasets``
   (package ``dataset-fashion-mnist``).
3. ``data/`` in the repository: what earlier runs extracted or downloaded.
4. Download through torchvision, only when asked for (``download=True``).

Every file is checked against a known md5 (torchvision's, or for the uncompressed IDX files the md5
of the original contents). A missing or corrupted file raises an error that names the file and says
how to get it; nothing falls back to partial or synthetic data.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .paths import project_root

__all__ = ["DATASETS", "MissingDataError", "CorruptDataError", "data_root", "mirror_dirs", "md5",
           "prepare_idx", "prepare_cifar10", "prepare", "torchvision_dataset", "Split", "load_splits",
           "imagenet_folder", "imagenet_eval_transform", "main"]

DATASETS = ("mnist", "fashion_mnist", "cifar10")


class MissingDataError(FileNotFoundError):
    """A data file is in none of the places looked at."""


class CorruptDataError(OSError):
    """A data file exists but cannot be read, or its contents do not match the known checksum.
    The message names the file and says how to replace it."""


# What reading a damaged file can raise: OSError covers gzip's BadGzipFile (bad header, CRC or
# length) and unreadable files; EOFError a truncated stream; zlib.error a garbled deflate stream
# (a byte flipped early in a .gz is caught by neither of the others).
_READ_ERRORS = (OSError, EOFError, zlib.error)


# md5 of the *uncompressed* IDX files. MNIST's equal the originals torchvision downloads (its .gz
# md5s match torchvision's); Fashion-MNIST's are those of the originals as shipped by Debian's
# dataset-fashion-mnist (recompressed .gz, identical contents).
_IDX = {
    "mnist": {
        "folder": "MNIST",
        "mirror_folders": ("MNIST/raw", "mnist"),
        "files": {
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        },
        "how": "run with download=True on a machine with internet, or point $AANN_MIRROR at a folder "
        "holding MNIST/raw/*.gz as torchvision downloads them",
    },
    "fashion_mnist": {
        "folder": "FashionMNIST",
        "mirror_folders": ("FashionMNIST/raw", "fashion-mnist"),
        "files": {
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        },
        "how": "install Debian's package (apt-get install dataset-fashion-mnist), or run with "
        "download=True on a machine with internet",
    },
}


def data_root() -> Path:
    """Where data sets are extracted or downloaded: ``$AANN_DATA`` or the repository's ``data/``."""
    env = os.environ.get("AANN_DATA")
    return Path(env) if env else project_root() / "data"


def mirror_dirs() -> list[Path]:
    """Offline mirrors in lookup order; only those that exist."""
    candidates = [Path(p) for p in os.environ.get("AANN_MIRROR", "").split(os.pathsep) if p]
    candidates += [project_root().parent / "shared" / "data", Path("/usr/share/datasets")]
    return [c for c in candidates if c.is_dir()]


def md5(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check(path: Path, expected: str, how: str) -> None:
    try:
        got = md5(path)
    except OSError as err:  # unreadable (permissions, I/O error): still named, with the way out
        raise CorruptDataError(f"{path} cannot be read ({err}). Replace it; {how}.") from err
    if got != expected:
        raise CorruptDataError(
            f"{path} is corrupted: md5 {got}, expected {expected}. Delete it and {how}."
        )


def _find_in_mirrors(name: str, filename: str) -> Path | None:
    spec = _IDX[name]
    for mirror in mirror_dirs():
        for sub in spec["mirror_folders"]:
            for candidate in (mirror / sub / filename, mirror / sub / f"{filename}.gz"):
                if candidate.is_file():
                    return candidate
    return None


def _extract(src: Path, dst: Path, expected: str, how: str) -> None:
    """Copy or gunzip ``src`` to ``dst`` atomically, refusing contents with the wrong md5."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dst.parent, delete=False, suffix=".part") as tmp:
        tmp_path = Path(tmp.name)
        try:
            opener = gzip.open if src.suffix == ".gz" else open
            with opener(src, "rb") as f:
                shutil.copyfileobj(f, tmp)
        except _READ_ERRORS as err:  # a truncated or garbled .gz
            tmp_path.unlink(missing_ok=True)
            raise CorruptDataError(f"{src} cannot be read ({err}). Replace it; {how}.") from err
    if md5(tmp_path) != expected:
        tmp_path.unlink()
        raise CorruptDataError(
            f"{src} is corrupted: its contents do not match the md5 {expected} of the original. "
            f"Replace it; {how}."
        )
    tmp_path.replace(dst)


def prepare_idx(name: str, download: bool = False) -> Path:
    """Make the raw IDX files of MNIST or Fashion-MNIST available; return torchvision's root."""
    spec = _IDX[name]
    root = data_root()
    raw = root / spec["folder"] / "raw"
    for filename, expected in spec["files"].items():
        target = raw / filename
        if target.is_file():
            _check(target, expected, spec["how"])
            continue
        source = _find_in_mirrors(name, filename)
        if source is not None:
            _extract(source, target, expected, spec["how"])
            continue
        looked = [str(raw)] + [f"{m}/{{{','.join(spec['mirror_folders'])}}}" for m in mirror_dirs()]
        missing = f"{name}: {filename}(.gz) is missing; looked in {', '.join(looked)}"
        if not download:
            raise MissingDataError(f"{missing}. To get it: {spec['how']}.")
        try:
            _torchvision_class(name)(root=str(root), train=True, download=True)
        except Exception as err:  # offline: torchvision's own error lists the URLs it tried
            raise MissingDataError(f"{missing}, and the download failed ({err}). To get it: {spec['how']}.") from err
        _check(target, expected, spec["how"])
    return root


def _torchvision_class(name: str):
    from torchvision import datasets

    return {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[name]


def prepare_cifar10(download: bool = False) -> Path:
    """Return a root whose ``cifar-10-batches-py`` passes torchvision's md5s, file by file."""
    from torchvision.datasets import CIFAR10

    files = CIFAR10.train_list + CIFAR10.test_list + [[CIFAR10.meta["filename"], CIFAR10.meta["md5"]]]
    how = (
        "run with download=True on a machine with internet, or point $AANN_MIRROR at a folder "
        "holding cifar-10-batches-py as torchvision extracts it"
    )
    roots = [data_root()] + mirror_dirs()
    for root in roots:
        folder = root / CIFAR10.base_folder
        if folder.is_dir():
            for filename, expected in files:
                path = folder / filename
                if not path.is_file():
                    raise MissingDataError(f"cifar10: {path} is missing. To get it: {how}.")
                _check(path, expected, how)
            return root
    missing = f"cifar10: no {CIFAR10.base_folder} folder in {', '.join(map(str, roots))}"
    if not download:
        raise MissingDataError(f"{missing}. To get it: {how}.")
    try:
        CIFAR10(root=str(data_root()), train=True, download=True)
    except Exception as err:
        raise MissingDataError(f"{missing}, and the download failed ({err}). To get it: {how}.") from err
    return data_root()


def prepare(name: str, download: bool = False) -> Path:
    """Find (or, with ``download=True``, fetch) data set ``name``; return its torchvision root."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return prepare_cifar10(download) if name == "cifar10" else prepare_idx(name, download)


def torchvision_dataset(name: str, train: bool, download: bool = False, **kwargs):
    """The torchvision dataset object for ``name``, after the lookup and checks above."""
    import pickle

    root = prepare(name, download)
    try:
        return _torchvision_class(name)(root=str(root), train=train, download=False, **kwargs)
    except (*_READ_ERRORS, pickle.UnpicklingError, ValueError, RuntimeError) as err:
        # the files passed their md5 a moment ago: something changed them since, or cannot read them
        raise CorruptDataError(f"{name}: torchvision cannot read the files under {root} ({err}). "
                               f"Delete the damaged files and run `python -m aann.data prepare {name}`.") from err


@dataclass
class Split:
    """Images ``x`` (float32, N x C x H x W, values in [0, 1]) and labels ``y`` (int64), on one device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device) -> "Split":
        return Split(self.x.to(device), self.y.to(device))

    def subset(self, n: int, seed: int = 0) -> "Split":
        """``n`` samples drawn without replacement with a fixed seed (all of them if n >= len)."""
        if n >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        idx = idx.to(self.y.device)
        return Split(self.x[idx], self.y[idx])

    def fingerprint(self) -> str:
        """A cheap content hash (shape, every label, a strided sample of the pixels), so that a
        cached model or a search checkpoint never outlives a change of its data."""
        h = hashlib.sha256()
        h.update(str(tuple(self.x.shape)).encode())
        h.update(self.y.cpu().numpy().tobytes())
        h.update(self.x.flatten()[:: max(1, self.x.numel() // 100_000)].cpu().numpy().tobytes())
        return h.hexdigest()[:16]


def _as_tensors(ds) -> Split:
    data = ds.data if isinstance(ds.data, torch.Tensor) else torch.from_numpy(np.asarray(ds.data))
    if data.ndim == 3:  # MNIST-like: N x H x W
        data = data.unsqueeze(1)
    else:  # CIFAR: N x H x W x C
        data = data.permute(0, 3, 1, 2)
    x = data.contiguous().float().div_(255.0)
    y = torch.as_tensor(ds.targets, dtype=torch.long)
    return Split(x, y)


def load_splits(
    name: str,
    val_size: int = 5000,
    seed: int = 0,
    device="cpu",
    download: bool = False,
    train_size: int | None = None,
) -> dict[str, Split]:
    """Train / validation / test tensors of data set ``name`` on ``device``.

    The validation split is carved from the official training set with a fixed seed, so it is the
    same for every run and never overlaps the test set. ``train_size`` keeps a seeded subset of the
    remaining training samples (the quick profile's smaller budget).
    """
    full_train = _as_tensors(torchvision_dataset(name, train=True, download=download))
    test = _as_tensors(torchvision_dataset(name, train=False, download=download))
    if not 0 < val_size < len(full_train):
        raise ValueError(f"val_size must be in (0, {len(full_train)}), got {val_size}")
    perm = torch.randperm(len(full_train), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    train = Split(full_train.x[train_idx], full_train.y[train_idx])
    val = Split(full_train.x[val_idx], full_train.y[val_idx])
    if train_size is not None:
        train = train.subset(train_size, seed=seed + 1)
    return {k: v.to(device) for k, v in {"train": train, "val": val, "test": test}.items()}


def imagenet_folder(root, labels_csv=None, transform=None):
    """An ImageNet-style folder (``<wnid>/<image>``) through ``torchvision.datasets.ImageFolder``.

    With all 1000 class folders present, ImageFolder's sorted order is ImageNet's class order. With
    only some (the 100-image sample), its own indices are wrong, so ``labels_csv`` (columns
    ``filename,wnid,class_index``) maps every wnid to its ImageNet class index.
    """
    from torchvision.datasets import ImageFolder

    root = Path(root)
    if not root.is_dir():
        raise MissingDataError(f"ImageNet folder {root} does not exist")
    if labels_csv is None:
        return ImageFolder(str(root), transform=transform)
    labels_csv = Path(labels_csv)
    if not labels_csv.is_file():
        raise MissingDataError(f"labels file {labels_csv} does not exist")
    with open(labels_csv, newline="") as f:
        wnid_to_index = {row["wnid"]: int(row["class_index"]) for row in csv.DictReader(f)}

    class _LabelledFolder(ImageFolder):
        def find_classes(self, directory):
            present = sorted(e.name for e in os.scandir(directory) if e.is_dir())
            unknown = [w for w in present if w not in wnid_to_index]
            if unknown:
                raise ValueError(f"{labels_csv} has no class index for folders {unknown[:5]}")
            return present, {w: wnid_to_index[w] for w in present}

    return _LabelledFolder(str(root), transform=transform)


def imagenet_eval_transform():
    """torchvision's evaluation transform for its ImageNet models: resize 256, centre crop 224,
    normalise with ImageNet's channel means and standard deviations."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ])


def main(argv=None) -> None:
    """``python -m aann.data prepare mnist fashion_mnist ...``: find, check and extract."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m aann.data")
    parser.add_argument("command", choices=["prepare"])
    parser.add_argument("names", nargs="+", choices=DATASETS)
    parser.add_argument("--download", action="store_true", help="download what no mirror has")
    args = parser.parse_args(argv)
    for name in args.names:
        print(f"{name}: ready in {prepare(name, download=args.download)}")


if __name__ == "__main__":
    main()
