"""aann.cache: a damaged entry is named, reported and trained again; never a bare unpickling error."""

import re

import pytest
import torch

from aann import cache
from aann.cache import DamagedCacheEntryWarning
from aann.models import get_model
from aann.training import TrainConfig, train_classifier, training_key

CONFIG = {"algorithm": "test", "n": 3}


def _damage_truncated(path):
    path.write_bytes(path.read_bytes()[:200])


def _damage_not_torch(path):
    path.write_text("this is not a torch archive\n")


def _damage_older_version(path):
    entry = torch.load(path, weights_only=True)
    torch.save({**entry, "cache_version": cache.CACHE_VERSION - 1}, path)


def _damage_other_config(path):
    entry = torch.load(path, weights_only=True)
    torch.save({**entry, "config_json": '{"algorithm": "something else"}'}, path)


def _damage_not_an_entry(path):
    torch.save({"weights": torch.zeros(3)}, path)


DAMAGES = {
    "truncated": (_damage_truncated, ""),
    "not a torch archive": (_damage_not_torch, ""),
    "older cache version": (_damage_older_version, f"cache version {cache.CACHE_VERSION - 1}"),
    "another configuration": (_damage_other_config, "another configuration"),
    "not an entry": (_damage_not_an_entry, "not a cache entry"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_entry_is_named_and_treated_as_missing(damage):
    path = cache.save(CONFIG, {"w": torch.arange(3.0)}, {"note": "hi"})
    make, reason = DAMAGES[damage]
    make(path)
    with pytest.warns(DamagedCacheEntryWarning, match=re.escape(str(path)) + rf" cannot be used \(.*{reason}"):
        assert cache.load(CONFIG) is None
    cache.save(CONFIG, {"w": torch.arange(3.0)}, {"note": "again"})  # the new entry replaces the file
    state, meta = cache.load(CONFIG)
    assert torch.equal(state["w"], torch.arange(3.0)) and meta == {"note": "again"}


def test_an_entry_without_a_version_field_is_the_current_version():
    """Entries written before they recorded their version were all written by version 2 (the key
    hashes the version, so an older one is not found under this name)."""
    path = cache.save(CONFIG, {"w": torch.ones(2)})
    entry = torch.load(path, weights_only=True)
    del entry["cache_version"]
    torch.save(entry, path)
    assert cache.CACHE_VERSION == 2
    state, _ = cache.load(CONFIG)
    assert torch.equal(state["w"], torch.ones(2))


@pytest.mark.parametrize("damage", ["truncated", "not a torch archive"])
def test_a_damaged_model_is_trained_again_and_the_entry_replaced(tiny_mnist_like, damage):
    config = TrainConfig(model="mnist_net", epochs=1, batch_size=128)
    first, meta = train_classifier(tiny_mnist_like, config, seed=0, progress=False)
    path = cache.cache_path(training_key(tiny_mnist_like, config, 0))
    DAMAGES[damage][0](path)
    with pytest.warns(DamagedCacheEntryWarning, match=re.escape(str(path))):
        again, meta_again = train_classifier(tiny_mnist_like, config, seed=0, progress=False)
    assert meta_again == meta
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    assert cache.load(training_key(tiny_mnist_like, config, 0)) is not None  # repaired: read without a warning



def test_memoized_computes_once_and_obeys_read_and_write():
    calls = []

    def compute():
        calls.append(1)
        return {"w": torch.full((2,), float(len(calls)))}, {"n": len(calls)}

    first = cache.memoized(CONFIG, compute)
    again = cache.memoized(CONFIG, compute)
    assert len(calls) == 1 and again[1] == first[1] == {"n": 1}
    fresh = cache.memoized(CONFIG, compute, read=False)  # recomputed and written
    assert len(calls) == 2 and fresh[1] == {"n": 2} and cache.load(CONFIG)[1] == {"n": 2}
    cache.memoized(CONFIG, compute, read=False, write=False)  # recomputed, not written
    assert len(calls) == 3 and cache.load(CONFIG)[1] == {"n": 2}


def test_a_stopped_training_resumes_from_its_last_epoch_on_the_same_trajectory(tiny_mnist_like, monkeypatch):
    """Same machine, same operations in the same order: the resumed model equals the uninterrupted
    one bit for bit, and only the epochs after the stop are trained again."""
    from aann import training

    config = TrainConfig(model="mnist_net", epochs=3, batch_size=128, schedule="triangular", cycle_epochs=1)
    whole, whole_meta = train_classifier(tiny_mnist_like, config, seed=0, progress=False, use_cache=False)

    key = training_key(tiny_mnist_like, config, 0)
    real_epoch, epochs_run = training.train_epoch, []

    def stop_in_third(*args, **kwargs):
        epochs_run.append(args[4])  # the epoch's seed: seed * 1000 + epoch
        if len(epochs_run) == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", stop_in_third)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(tiny_mnist_like, config, seed=0, progress=False)
    assert cache.load(key) is None and cache.partial_path(key).is_file()

    epochs_run.clear()
    monkeypatch.setattr(training, "train_epoch", lambda *a, **k: (epochs_run.append(a[4]), real_epoch(*a, **k))[1])
    resumed, meta = train_classifier(tiny_mnist_like, config, seed=0, progress=False)
    assert epochs_run == [2]  # epochs 0 and 1 were not trained again
    assert meta == whole_meta
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
    assert not cache.partial_path(key).exists() and cache.load(key) is not None


def test_an_unreadable_partial_training_is_named_and_training_starts_over(tiny_mnist_like):
    config = TrainConfig(model="mnist_net", epochs=1, batch_size=128)
    key = training_key(tiny_mnist_like, config, 0)
    path = cache.partial_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a torch archive")
    with pytest.warns(DamagedCacheEntryWarning, match=re.escape(str(path))):
        train_classifier(tiny_mnist_like, config, seed=0, progress=False)
    assert not path.exists()


def test_a_stopped_recorded_training_resumes_with_the_epochs_it_recorded(tiny_mnist_like, monkeypatch):
    """``record_training`` (the activations of fixed samples before training and after every epoch)
    resumes like any training: the record of a stopped and resumed run equals the uninterrupted one."""
    from aann import training
    from aann.activations import capture, default_layers, record_training

    config = TrainConfig(model="elu_mlp", epochs=3, batch_size=128, schedule="triangular", cycle_epochs=1)
    samples = tiny_mnist_like["train"].subset(20, seed=1)
    layers = default_layers(get_model("elu_mlp"))
    whole, whole_meta = train_classifier(tiny_mnist_like, config, seed=0, progress=False, use_cache=False,
                                         probe=({}, lambda net: capture(net, samples.x, layers)[0]))
    real_epoch, epochs_run = training.train_epoch, []

    def stop_in_third(*args, **kwargs):
        epochs_run.append(args[4])
        if len(epochs_run) == 3:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", stop_in_third)
    with pytest.raises(KeyboardInterrupt):
        record_training(tiny_mnist_like, config, samples, seed=0)
    epochs_run.clear()
    monkeypatch.setattr(training, "train_epoch", lambda *a, **k: (epochs_run.append(a[4]), real_epoch(*a, **k))[1])
    model, meta, record = record_training(tiny_mnist_like, config, samples, seed=0)
    assert epochs_run == [2]
    assert record.shape == (4, 20, sum(capture(model, samples.x[:1], layers)[0].shape[1:]))
    assert torch.equal(record, whole_meta["probe"])
    assert meta == {k: v for k, v in whole_meta.items() if k != "probe"}
    assert all(torch.equal(a, b) for a, b in zip(whole.state_dict().values(), model.state_dict().values()))


def test_a_snapshot_saved_before_probes_were_kept_resumes_a_training_without_probes(tiny_mnist_like, monkeypatch):
    """Snapshots written before probes were stored lack the ``probes`` entry: a training that
    measures none continues from them; one that does starts over, since the earlier epochs' probes
    are not in the snapshot."""
    from aann import training
    from aann.activations import capture, default_layers

    config = TrainConfig(model="elu_mlp", epochs=2, batch_size=128)
    key = training_key(tiny_mnist_like, config, 0)
    real_epoch = training.train_epoch

    def stop_in_second(*args, **kwargs):
        if args[4] == 1:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(training, "train_epoch", stop_in_second)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(tiny_mnist_like, config, seed=0, progress=False)
    old = torch.load(cache.partial_path(key), weights_only=True)
    del old["state"]["probes"]
    torch.save(old, cache.partial_path(key))

    epochs_run = []
    monkeypatch.setattr(training, "train_epoch", lambda *a, **k: (epochs_run.append(a[4]), real_epoch(*a, **k))[1])
    samples = tiny_mnist_like["train"].subset(10, seed=1)
    layers = default_layers(get_model("elu_mlp"))
    probe = ({}, lambda net: capture(net, samples.x, layers)[0])
    _, meta = training._train(get_model("elu_mlp"), tiny_mnist_like, config, 0, False, probe[1], key)
    assert epochs_run == [0, 1] and len(meta["history"]["val_acc"]) == 2  # probed: started over
    epochs_run.clear()
    train_classifier(tiny_mnist_like, config, seed=0, progress=False)
    assert epochs_run == [1]  # no probes: continued from the old snapshot
