from dataclasses import replace

import pytest
import torch

from aann import cache
from aann.psiren import LEVELS_FIG2, LEVELS_FIG2B, PSirenConfig, p_siren
from aann.ternary import check_sparse_ternary
from aann.training import accuracy, random_shift

CFG = PSirenConfig(n1=2, n2=4, n3=1, n4=2, batch_size=64)


def _same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_every_level_is_sparse_ternary_and_learns(tiny_mnist_like):
    out = p_siren(tiny_mnist_like, [0, 50, 90], seed=0, config=CFG, use_cache=False, progress=False)
    assert list(out) == [0.0, 50.0, 90.0]
    for p, run in out.items():
        check_sparse_ternary(run.model, p)
        assert run.history["step"][-1] == 4
    assert accuracy(out[50.0].model, tiny_mnist_like["test"]) > 0.5  # chance is 0.1


def test_same_seed_same_network(tiny_mnist_like):
    a = p_siren(tiny_mnist_like, [80], seed=3, config=CFG, use_cache=False, progress=False)[80.0]
    b = p_siren(tiny_mnist_like, [80], seed=3, config=CFG, use_cache=False, progress=False)[80.0]
    c = p_siren(tiny_mnist_like, [80], seed=4, config=CFG, use_cache=False, progress=False)[80.0]
    assert _same(a.model, b.model) and a.history == b.history
    assert not _same(a.model, c.model)


def test_fork_equals_a_run_aimed_at_the_level_alone(tiny_mnist_like):
    # rate 90 / 4 = 22.5 % per epoch in both; the sweep forks level 90 off a trajectory that also
    # stopped at 30 and 60, the lone run prunes straight to each epoch's target.
    sweep = p_siren(tiny_mnist_like, [30, 60, 90], seed=1, config=CFG, use_cache=False, progress=False)
    alone = p_siren(tiny_mnist_like, [90], seed=1, config=CFG, use_cache=False, progress=False)
    assert _same(sweep[90.0].model, alone[90.0].model)


def test_cache_reuses_and_is_keyed_by_config(tiny_mnist_like, monkeypatch):
    first = p_siren(tiny_mnist_like, [50], seed=0, config=CFG, progress=False)[50.0]

    def no_training(*args, **kwargs):
        raise AssertionError("trained although the network was cached")

    monkeypatch.setattr("aann.psiren.train_epoch", no_training)
    again = p_siren(tiny_mnist_like, [50], seed=0, config=CFG, progress=False)[50.0]
    assert _same(first.model, again.model) and again.val_acc == first.val_acc
    with pytest.raises(AssertionError, match="trained although"):  # another config is another key
        p_siren(tiny_mnist_like, [50], seed=0, config=PSirenConfig(n1=2, n2=4, n3=1, n4=3, batch_size=64),
                progress=False)


def test_config_validation():
    with pytest.raises(ValueError, match="n2"):
        PSirenConfig(n2=0)
    with pytest.raises(ValueError, match="scope"):
        PSirenConfig(scope="row")
    with pytest.raises(ValueError, match="shift"):
        PSirenConfig(shift=-1)
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        p_siren({"train": None, "val": None}, [100])


def test_figure_2_levels_are_the_papers():
    # Fig. 2a: 15 levels, plus 90 % (the reference net); Fig. 2b: Fig. 2a's and 96-99 %, 19 (+ 90 %)
    assert LEVELS_FIG2 == [0, 10, 20, 30, 40, 50, 60, 70, 80, 85, 87, 89, 90, 91, 93, 95]
    assert LEVELS_FIG2B == sorted(LEVELS_FIG2B) and LEVELS_FIG2B[-5:] == [95, 96, 97, 98, 99]
    assert len([p for p in LEVELS_FIG2B if p != 90]) == 19


def test_cache_key_is_order_free_and_roundtrips():
    a = {"x": 1, "y": [1, 2]}
    assert cache.config_key(a) == cache.config_key({"y": [1, 2], "x": 1})
    assert cache.load(a) is None
    cache.save(a, {"w": torch.arange(3)}, {"note": "hi"})
    state, meta = cache.load(a)
    assert torch.equal(state["w"], torch.arange(3)) and meta == {"note": "hi"}


def test_shift_augmentation_moves_each_image_within_its_range(tiny_mnist_like):
    x = torch.zeros(200, 1, 28, 28)
    x[:, 0, 14, 14] = 1.0
    moved = random_shift(x, torch.Generator().manual_seed(0), shift=2)
    rows, cols = (moved[:, 0] == 1).nonzero()[:, 1:].T
    assert moved.shape == x.shape and float(moved.sum()) == 200  # one pixel each, never cut off
    assert set(rows.tolist()) == set(range(12, 17)) and set(cols.tolist()) == set(range(12, 17))
    assert torch.equal(random_shift(x, torch.Generator(), 0), x)
    # p-SIREN with augmentation trains another network
    plain = p_siren(tiny_mnist_like, [50], seed=0, config=CFG, use_cache=False, progress=False)[50.0]
    shifted = p_siren(tiny_mnist_like, [50], seed=0, config=replace(CFG, shift=1), use_cache=False,
                      progress=False)[50.0]
    check_sparse_ternary(shifted.model, 50)
    assert not _same(plain.model, shifted.model)


def test_parallel_jobs_fill_the_cache_that_p_siren_then_reads(monkeypatch):
    from aann import psiren
    from aann.data import load_splits
    from aann.psiren import p_siren_parallel

    cfg = PSirenConfig(n1=1, n2=2, n3=0, n4=1, batch_size=64)
    jobs = [dict(dataset="mnist", seed=s, levels=[50, 90], config=cfg, train_size=400) for s in (0, 1)]
    p_siren_parallel(jobs, workers=2, device="cpu")  # two spawned processes

    def no_training(*args, **kwargs):
        raise AssertionError("p_siren trained although the parallel jobs had cached every level")

    monkeypatch.setattr(psiren, "train_epoch", no_training)
    monkeypatch.setattr(psiren, "fine_tune", no_training)
    data = load_splits("mnist", train_size=400)
    for s in (0, 1):
        runs = p_siren(data, [50, 90], seed=s, config=cfg)
        for p, run in runs.items():
            check_sparse_ternary(run.model, p)


def test_parallel_jobs_are_checked_before_anything_runs():
    from aann.psiren import p_siren_parallel

    with pytest.raises(ValueError, match="positive number of processes"):
        p_siren_parallel([], workers=0)
    with pytest.raises(ValueError, match=r"missing \['levels'\], unknown \['sed'\]"):
        p_siren_parallel([dict(dataset="mnist", sed=0, seed=0)], workers=2)


def test_parallel_jobs_from_a_script_on_stdin_say_why_they_cannot_start(monkeypatch):
    # spawned workers re-import the main module: from `python - <<EOF` they died with a bare
    # "terminated abruptly" before the check
    import __main__

    from aann.psiren import p_siren_parallel

    monkeypatch.setattr(__main__, "__file__", "<stdin>", raising=False)
    jobs = [dict(dataset="mnist", seed=s, levels=[50]) for s in (0, 1)]
    with pytest.raises(RuntimeError, match="re-imports the main module.*'<stdin>'"):
        p_siren_parallel(jobs, workers=2, device="cpu")


def test_batch_norm_nets_keep_the_scale_set_at_ternarization(tiny_mnist_like, monkeypatch):
    from aann import psiren
    from aann.models import fold_batch_norm
    from aann.training import logits

    scales = {}
    ternarize = psiren.ternarize

    def record(model):  # the conv scales as ternarization sets them
        ternarize(model)
        scales.update({n: model.get_submodule(n).scale.detach().clone() for n in ("layer1.0", "layer2.0", "fc")})

    monkeypatch.setattr(psiren, "ternarize", record)
    cfg = replace(CFG, model_kwargs={"batch_norm": True})
    net = p_siren(tiny_mnist_like, [80], seed=0, config=cfg, use_cache=False, progress=False)[80.0].model
    check_sparse_ternary(net, 80)
    assert torch.equal(net.layer1[0].scale, scales["layer1.0"]) and torch.equal(net.layer2[0].scale, scales["layer2.0"])
    assert not torch.equal(net.fc.scale, scales["fc"])  # no norm after fc: its scale is learned
    folded = fold_batch_norm(net)
    check_sparse_ternary(folded, 80)
    assert torch.equal(logits(folded, tiny_mnist_like["test"]).argmax(1), logits(net, tiny_mnist_like["test"]).argmax(1))


@pytest.mark.parametrize("stop_after", [1, 3, 5])  # in step 1; after the fork at 0 %; in step 2
def test_a_stopped_sweep_resumes_from_its_last_trunk_epoch(tiny_mnist_like, monkeypatch, stop_after):
    """Same machine, same operations: the resumed sweep's networks equal an uninterrupted sweep's
    bit for bit, and no trunk epoch is trained twice."""
    levels = [0, 30, 60, 90]
    whole = p_siren(tiny_mnist_like, levels, seed=2, config=CFG, use_cache=False, progress=False)

    import aann.psiren as psiren

    real_epoch, trunk_epochs = psiren.train_epoch, []

    def counting(*args, stop=None, **kwargs):  # trunk epochs are the ones called without a scheduler
        if len(args) < 6 and "scheduler" not in kwargs:
            trunk_epochs.append(args[4])
            if stop is not None and len(trunk_epochs) > stop:
                raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(psiren, "train_epoch", lambda *a, **k: counting(*a, stop=stop_after, **k))
    with pytest.raises(KeyboardInterrupt):
        p_siren(tiny_mnist_like, levels, seed=2, config=CFG, progress=False)
    first_seeds = list(trunk_epochs)
    monkeypatch.setattr(psiren, "train_epoch", counting)
    resumed = p_siren(tiny_mnist_like, levels, seed=2, config=CFG, progress=False)
    assert len(trunk_epochs) == CFG.n1 + CFG.n2 + 1  # the stopped epoch is the only one run twice
    assert not set(trunk_epochs[len(first_seeds):]) & set(first_seeds[:-1])
    for p in levels:
        assert _same(whole[p].model, resumed[p].model) and whole[p].history == resumed[p].history
