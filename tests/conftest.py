import pytest
import torch

from aann.data import Split


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Unit tests never read or write the book's model cache or results."""
    monkeypatch.setenv("AANN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AANN_RESULTS", str(tmp_path / "results"))


@pytest.fixture
def tiny_mnist_like():
    """A small learnable problem shaped like MNIST: the class sets the brightness of one patch."""
    g = torch.Generator().manual_seed(0)

    def make(n):
        y = torch.randint(0, 10, (n,), generator=g)
        x = 0.1 * torch.rand(n, 1, 28, 28, generator=g)
        for c in range(10):
            r, col = divmod(c, 4)
            x[y == c, :, 4 + 7 * r:9 + 7 * r, 2 + 7 * col:7 + 7 * col] += 0.9
        return Split(x, y)

    return {"train": make(512), "val": make(256), "test": make(256)}
