"""aann.store: the committed models and checkpoints, found by the cache and by SENSE, read-only."""

import json
from types import SimpleNamespace

import pytest
import torch

from aann import cache, store
from aann import sense as sense_module
from aann import sense_checkpoints as checkpoint_module
from aann.sense import SenseConfig, checkpoint_path, random_sparse_ternary, sense


def test_every_stored_file_is_listed_with_its_hash_and_loads():
    entries = store.manifest()
    folder = store.store_dir()
    files = {p.name for p in folder.iterdir() if p.name != "MANIFEST.json"} if folder.is_dir() else set()
    assert files == set(entries), "every file in models/ is in the manifest and every entry has its file"
    total = 0
    for name, entry in entries.items():
        path = folder / name
        assert store.sha256(path) == entry["sha256"], f"{path} does not match its sha256 in the manifest"
        assert path.stat().st_size == entry["bytes"] and entry["command"] and entry["config"]
        total += entry["bytes"]
        saved = torch.load(path, weights_only=entry["kind"] != "sense_checkpoint")
        if entry["kind"] == "sense_checkpoint":  # the configuration it was made with, and finished
            assert json.loads(json.dumps(saved["config"])) == entry["config"]["sense_config"]  # tuples as lists
            assert saved["state"]["step"] == entry["config"]["steps_done"] == saved["config"]["steps"]
    assert total <= 50 * 2**20  # the store stays small


@pytest.fixture
def private_store(tmp_path, monkeypatch):
    monkeypatch.setenv("AANN_STORE", str(tmp_path / "store"))
    return tmp_path / "store"


def test_the_cache_reads_a_stored_entry(private_store):
    config = {"algorithm": "test", "n": 1}
    path = cache.save(config, {"w": torch.arange(3.0)}, {"note": "stored"})
    store.add(path, "model", config, "python -c pass")
    path.unlink()
    before = dict(cache.USAGE)
    state, meta = cache.load(config)
    assert torch.equal(state["w"], torch.arange(3.0)) and meta == {"note": "stored"}
    read = "networks read" + cache.STORE_READ  # counted as a read from the store, not the cache
    assert cache.USAGE[read] - before.get(read, 0) == 1 and cache.USAGE["networks read"] == before.get("networks read", 0)
    assert json.loads((private_store / "MANIFEST.json").read_text())[path.name]["kind"] == "model"


def test_a_finished_search_in_the_store_is_read_not_run(private_store, tiny_mnist_like, monkeypatch):
    start = random_sparse_ternary("mnist_net", 80, seed=0)
    val = tiny_mnist_like["val"]
    cfg = SenseConfig(schedule="random", steps=4, block=2, neighbours=10, seed=0)
    path = checkpoint_path("stored", start, val, cfg)
    done = sense(start, val, cfg, checkpoint=path, progress=False)
    store.add(path, "sense_checkpoint", {"sense_config": {}}, "python -c pass")
    path.unlink()

    def no_search(*args, **kwargs):
        raise AssertionError("a search in the store ran again")

    monkeypatch.setattr(sense_module.Climber, "neighbourhood", no_search)
    before = cache.USAGE["searches read" + cache.STORE_READ]
    again = sense(start, val, cfg, checkpoint=path, progress=False)
    assert cache.USAGE["searches read" + cache.STORE_READ] == before + 1
    assert (again.path, again.history) == (done.path, done.history)
    assert not path.exists()  # the store is only read


def test_every_stored_search_keeps_its_name_and_configuration_under_todays_key(monkeypatch):
    """A search's checkpoint is found by a key of its start, its selection split and its
    configuration: a field added to SenseConfig must leave the committed searches' keys as they are."""
    manifest = json.loads((store.store_dir() / "MANIFEST.json").read_text())
    stored = [name for name, entry in manifest.items() if entry["kind"] == "sense_checkpoint"]
    assert stored
    for name in stored:
        saved = torch.load(store.store_dir() / name, weights_only=False)
        config = SenseConfig(**saved["config"])
        assert checkpoint_module.config_key(config) == saved["config"]  # load_checkpoint's comparison
        # the key's inputs: the start's fingerprint and the split's (16 hex digits each), the config
        start_fp, split_fp = saved["initial"][:16], saved["initial"][16:]
        monkeypatch.setattr(checkpoint_module, "state_fingerprint", lambda model: start_fp)
        split = SimpleNamespace(fingerprint=lambda: split_fp)
        assert checkpoint_path(name.rsplit("-", 1)[0], None, split, config).name == name
