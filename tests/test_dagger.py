import numpy as np
import pytest
import torch

from aann import car_racing as cr
from aann import dagger as dagger_module
from aann.dagger import DaggerConfig, MixedDriver, collect, dagger, validation_return
from aann.data import Split
from aann.demonstrations import frames_split
from aann.models import get_model
from aann.pruning import prune_to
from aann.ternary import ternarize


def car_net(seed=0):
    torch.manual_seed(seed)
    net = get_model("car_net")
    prune_to(net, 90, scope="layer")
    ternarize(net)
    return net


@pytest.mark.parametrize("kwargs, message", [
    ({"rounds": 0}, "rounds"), ({"epochs": 0}, "epochs"), ({"beta": 1.0}, "beta"), ({"steps": 0}, "steps"),
    ({"lr": 0.0}, "lr"),
])
def test_config_errors_say_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DaggerConfig(**kwargs)


def test_collection_labels_with_the_expert_and_is_seeded():
    net = car_net()
    a = collect(net, [50_000], beta=0.5, steps=40, progress=False)
    b = collect(net, [50_000], beta=0.5, steps=40, progress=False)
    assert a.x.shape == (40, 1, 96, 96) and 0 <= float(a.x.min()) and float(a.x.max()) <= 1
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    # the labels are the expert's decisions on the frames the mixed driver visited
    env = cr.make_env()
    try:
        obs, _ = env.reset(seed=50_000)
        driver = MixedDriver(net, beta=0.5, seed=[0, 50_000])
        driver.reset(env)
        labels, executed_net = [], 0
        for _ in range(40):
            labels.append(driver.label(obs))
            action = driver.act(obs)
            executed_net += not np.array_equal(action, cr.CLASS_ACTIONS[labels[-1]])
            obs, *_ = env.step(action)
    finally:
        env.close()
    assert a.y.tolist() == labels
    assert executed_net > 0  # with beta 0.5 the net drives some of the frames (and differs from the expert)


def test_dagger_rounds_are_cached_and_the_round_is_chosen_on_validation(tmp_path, monkeypatch):
    monkeypatch.setenv("AANN_CACHE", str(tmp_path))
    net = car_net()
    g = torch.Generator().manual_seed(0)
    train = Split(torch.rand(64, 1, 96, 96, generator=g), torch.randint(0, 3, (64,), generator=g))
    val = Split(torch.rand(16, 1, 96, 96, generator=g), torch.randint(0, 3, (16,), generator=g))
    cfg = DaggerConfig(rounds=2, tracks_per_round=1, steps=30, epochs=1)
    first = dagger(net, train, val, [20_000], cfg, progress=False, val_steps=30)
    assert first.history["round"] == [0, 1, 2] and len(first.networks) == 3
    assert first.history["frames"] == [64, 94, 124]
    assert first.best_round == int(np.argmax(first.history["val_return"]))
    assert first.model is first.networks[first.best_round]
    # training keeps the family: same mask, ternary values
    for a, b in zip(first.networks[0].modules(), first.networks[-1].modules()):
        if hasattr(a, "ternary_values"):
            assert torch.equal(a.ternary_values() != 0, b.ternary_values() != 0)
    assert not torch.equal(first.networks[0].fc.weight, first.networks[-1].fc.weight)
    def no_driving(*args, **kwargs):
        raise AssertionError("a rerun from the cache must not drive")

    monkeypatch.setattr(dagger_module, "evaluate_driver", no_driving)
    again = dagger(net, train, val, [20_000], cfg, progress=False, val_steps=30)  # rounds and returns cached
    for a, b in zip(first.networks, again.networks):
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)
    assert again.history == first.history
    with pytest.raises(ValueError, match="validation track"):
        dagger(net, train, val, [], cfg, progress=False)


def test_validation_return_leaves_the_callers_network_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("AANN_CACHE", str(tmp_path))
    net = car_net().train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    mean = validation_return(net, [20_000], steps=5, progress=False)
    assert net.training and all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert validation_return(net, [20_000], steps=5, progress=False) == mean  # from the cache


def test_frames_split_scales_uint8_frames_and_refuses_other_input():
    frames = np.full((3, 96, 96), 255, dtype=np.uint8)
    split = frames_split(frames, [0, 1, 2])
    assert split.x.shape == (3, 1, 96, 96) and float(split.x.max()) == 1.0 and split.y.dtype == torch.int64
    with pytest.raises(ValueError, match="uint8 N x H x W"):
        frames_split(frames.astype(np.float32), [0, 1, 2])
    with pytest.raises(ValueError, match="one label each"):
        frames_split(frames, [0, 1])
