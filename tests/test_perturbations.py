"""Perturbations of one layer (aann.perturbations) and the robustness statistics (aann.robustness)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aann.data import Split, imagenet_eval_transform, imagenet_folder
from aann.models import MissingWeightsError, get_model, imagenet_model
from aann.perturbations import (Fault, TREATMENTS, faults_grid, layer_name, layer_weights, naive_sweep, perturb, sweep,
                                weight_layer, weight_layers, weight_statistics)
from aann.pruning import prune_to
from aann.robustness import findings, layer_kinds, linear_r2, sweep_table
from aann.ternary import ternarize

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def assert_same_accuracies(fast, slow, n_images: int) -> None:
    """``sweep`` against ``naive_sweep``: the same faults, the same draws, the same predictions, but
    not the same arithmetic. After the perturbed layer the sweep runs K perturbed copies as one
    batch of K x n images (and a linear layer's K weight sets as one matrix product), the naive
    loop n images at a time: other shapes may select other CPU kernels, whose float32 rounding
    (~1e-7 relative) can flip the prediction of an image whose top two logits are that close.
    Allowed: one such image per fault; a real difference (another draw, a wrong layer) moves many."""
    assert fast.shape == slow.shape
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1.0 / n_images + 1e-12)


@pytest.fixture(scope="module")
def alexnet():
    torch.manual_seed(0)
    return get_model("alexnet_cifar").eval()


@pytest.fixture(scope="module")
def ternary_net():
    torch.manual_seed(0)
    net = get_model("mnist_net")
    prune_to(net, 90, scope="layer")
    ternarize(net)
    return net.eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    return Split(torch.rand(96, 3, 32, 32, generator=g), torch.randint(0, 10, (96,), generator=g))


@pytest.mark.parametrize("treatment,amount", [("synapse_knockout", 0.3), ("node_knockout", 0.5), ("gaussian", 2.0)])
@pytest.mark.parametrize("layer", ["conv1", "conv4", "dense2"])
def test_perturb_is_undone_exactly(alexnet, treatment, amount, layer):
    before = _state(alexnet)
    w0 = weight_layers(alexnet)[layer].weight.detach().clone()
    with perturb(alexnet, Fault(layer, treatment, amount)):
        assert not torch.equal(weight_layers(alexnet)[layer].weight, w0)
    assert _same(before, _state(alexnet))


def test_perturb_ternary_acts_on_the_computed_weights_and_is_undone(ternary_net):
    before = _state(ternary_net)
    layer = weight_layers(ternary_net)["layer2.0"]
    w, _ = layer_weights(layer)
    nonzero = int((w != 0).sum())
    with perturb(ternary_net, Fault("layer2.0", "synapse_knockout", 1.0)):
        # every weight 0 (a latent weight set to 0 would have computed as sign(0) = +1)
        assert int((layer_weights(layer)[0] != 0).sum()) == 0
    assert _same(before, _state(ternary_net))
    assert int((layer_weights(layer)[0] != 0).sum()) == nonzero


def test_synapse_knockout_zeroes_the_exact_fraction(alexnet):
    layer = weight_layers(alexnet)["conv3"]
    layer.bias.data.fill_(0.1)  # He initialisation leaves biases at 0
    with perturb(alexnet, Fault("conv3", "synapse_knockout", 0.4, repeat=2)):
        w, b = layer.weight, layer.bias
        assert int((w == 0).sum()) == round(0.4 * w.numel())
        assert int((b == 0).sum()) == round(0.4 * b.numel())


def test_node_knockout_removes_whole_units_with_their_bias(alexnet):
    layer = weight_layers(alexnet)["dense1"]
    layer.bias.data.fill_(0.1)  # so that a zeroed bias is visible
    with perturb(alexnet, Fault("dense1", "node_knockout", 0.25)):
        dead = (layer.weight == 0).all(1)
        assert int(dead.sum()) == round(0.25 * layer.weight.shape[0])
        assert torch.all(layer.bias[dead] == 0) and torch.all(layer.bias[~dead] == 0.1)


def test_gaussian_noise_has_m_sigma_spread(alexnet):
    layer = weight_layers(alexnet)["dense1"]
    w0 = layer.weight.detach().clone()
    with perturb(alexnet, Fault("dense1", "gaussian", 1.5)):
        noise = layer.weight.detach() - w0
    ratio = float(noise.std() / (1.5 * w0.std(unbiased=False)))
    assert abs(ratio - 1) < 0.02  # 196k draws: the sample sd is within 0.3 % of the true one
    assert abs(float(noise.mean())) < 0.01 * float(w0.std())


def test_same_fault_same_draws_and_repeats_differ(alexnet):
    def weights(fault):
        with perturb(alexnet, fault):
            return weight_layers(alexnet)[fault.layer].weight.detach().clone()

    assert torch.equal(weights(Fault("conv2", "gaussian", 1.0)), weights(Fault("conv2", "gaussian", 1.0)))
    assert not torch.equal(weights(Fault("conv2", "gaussian", 1.0, 0)), weights(Fault("conv2", "gaussian", 1.0, 1)))


@pytest.mark.parametrize("kwargs", [{}, {"copies_per_pass": 1}, {"batch_size": 40},
                                    {"memory_format": torch.contiguous_format}])
def test_batched_sweep_equals_the_naive_loop(alexnet, images, kwargs):
    layers = ["conv1", "conv3", "dense1", "dense3"]
    faults = faults_grid(layers, TREATMENTS, {t: [0.0, 0.5, 1.0] for t in TREATMENTS}, repeats=2)
    before = _state(alexnet)
    fast = sweep(alexnet, images, faults, progress=False, **kwargs)
    assert _same(before, _state(alexnet))
    slow = naive_sweep(alexnet, images, faults, memory_format=kwargs.get("memory_format", torch.channels_last))
    assert_same_accuracies(fast, slow, len(images))
    assert fast.shape == (len(faults), 2)


class _Counting(torch.nn.Module):
    """A parameter-free leaf that counts how often it really computes."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x * 1.0


class _Functional(torch.nn.Module):
    """A net whose forward mixes modules with functional code, and calls one leaf twice."""

    def __init__(self):
        super().__init__()
        self.count = _Counting()
        self.fc1, self.fc2, self.act = torch.nn.Linear(12, 16), torch.nn.Linear(16, 5), torch.nn.Tanh()

    def forward(self, x):
        h = self.act(self.fc1(self.count(x).flatten(1)))
        return self.fc2(self.act(h) + 0.5 * h)  # self.act runs twice: it must never be skipped


def test_sweep_computes_the_shared_prefix_once_per_batch():
    torch.manual_seed(0)
    net = _Functional().eval()
    g = torch.Generator().manual_seed(3)
    data = Split(torch.rand(60, 3, 2, 2, generator=g), torch.randint(0, 5, (60,), generator=g))
    faults = faults_grid(["fc1", "fc2"], TREATMENTS, {t: [0.5, 1.0] for t in TREATMENTS}, repeats=3)
    fast = sweep(net, data, faults, topk=(1,), batch_size=20, copies_per_pass=2, progress=False)
    # one clean pass per batch (3) and the one-image probe of output sizes; every perturbed pass reuses it
    assert net.count.calls == 3 + 1
    assert_same_accuracies(fast, naive_sweep(net, data, faults, topk=(1,), batch_size=20), len(data))
    assert "forward" not in vars(net.count) and "forward" not in vars(net.fc1)  # nothing left patched


def _no_layer_computation(*args, **kwargs):
    raise AssertionError("a perturbed layer was computed")


def test_node_knockouts_reuse_the_clean_layer_output(alexnet, images, monkeypatch):
    from aann import perturbations

    faults = faults_grid(["conv1", "conv4", "dense2"], ["node_knockout"], {"node_knockout": [0.3, 1.0]}, repeats=2)
    slow = naive_sweep(alexnet, images, faults)
    monkeypatch.setattr(perturbations.sweeps, "_stacked_forward", _no_layer_computation)
    assert_same_accuracies(sweep(alexnet, images, faults, progress=False), slow, len(images))


def test_node_knockouts_are_exact_after_an_in_place_activation(monkeypatch):
    """An in-place activation after the layer overwrites its output in the clean pass: the sweep
    must start from a copy taken before (reusing the overwritten tensor would apply the ELU twice)."""
    from aann import perturbations

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ELU(inplace=True), torch.nn.Linear(16, 4)).eval()
    g = torch.Generator().manual_seed(5)
    data = Split(torch.randn(50, 8, generator=g), torch.randint(0, 4, (50,), generator=g))
    faults = faults_grid(["0"], ["node_knockout"], {"node_knockout": [0.25, 0.5]}, repeats=3)
    monkeypatch.setattr(perturbations.sweeps, "_stacked_forward", _no_layer_computation)
    fast = sweep(net, data, faults, topk=(1,), progress=False)
    assert_same_accuracies(fast, naive_sweep(net, data, faults, topk=(1,)), len(data))


def test_batched_sweep_on_a_ternary_net_and_in_any_order(ternary_net):
    g = torch.Generator().manual_seed(2)
    data = Split(torch.rand(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g))
    faults = faults_grid(["layer1.0", "layer2.0", "fc"], TREATMENTS, {t: [0.3, 1.0] for t in TREATMENTS}, 2)
    fast = sweep(ternary_net, data, faults, progress=False)
    assert_same_accuracies(fast, naive_sweep(ternary_net, data, faults), len(data))
    assert_same_accuracies(sweep(ternary_net, data, faults[::-1], progress=False), fast[::-1], len(data))


def test_sparse_layers_answer_to_their_paper_names_too(ternary_net):
    """The neighbours and SENSE name sparse layers as the paper does (``1.0``); the perturbations
    accept that name for the module ``layer1.0`` (a fault's draws are seeded from its name as given)."""
    assert layer_name(ternary_net, "1.0") == "layer1.0" and layer_name(ternary_net, "fc") == "fc"
    assert weight_layer(ternary_net, "2.0") is weight_layer(ternary_net, "layer2.0") is ternary_net.layer2[0]
    g = torch.Generator().manual_seed(2)
    data = Split(torch.rand(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g))
    faults = [Fault("1.0", "node_knockout", 0.5), Fault("2.0", "gaussian", 1.0), Fault("layer1.0", "gaussian", 1.0)]
    assert_same_accuracies(sweep(ternary_net, data, faults, progress=False), naive_sweep(ternary_net, data, faults),
                           len(data))


def test_bad_input_is_refused_with_what_is_allowed(alexnet, images):
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\], got 1.5"):
        Fault("conv1", "synapse_knockout", 1.5)
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\], got -0.1"):
        Fault("conv1", "node_knockout", -0.1)
    with pytest.raises(ValueError, match="magnitude must be a finite number >= 0, got -1"):
        Fault("conv1", "gaussian", -1)
    with pytest.raises(ValueError, match="unknown treatment 'dropout'; allowed: synapse_knockout"):
        Fault("conv1", "dropout", 0.5)
    # as the neighbour side: a ValueError (also a KeyError) whose message is not quoted
    with pytest.raises(ValueError, match="^unknown layer 'conv9'; .* conv1, conv2"):
        with perturb(alexnet, Fault("conv9", "gaussian", 1.0)):
            pass
    with pytest.raises(ValueError, match="^unknown layer 'fc'; .* conv1, conv2"):
        sweep(alexnet, images, [Fault("fc", "gaussian", 1.0)], progress=False)


def test_weight_statistics_table(alexnet):
    stats = weight_statistics(alexnet)
    assert list(stats.index[:2]) == ["conv1_W", "conv1_b"] and len(stats) == 16
    w = alexnet.conv2.weight.detach().double()
    row = stats.loc["conv2_W"]
    assert row["size"] == w.numel()
    assert np.isclose(row["sigma"], float(w.std(unbiased=False)))
    assert np.isclose(row["max"], float(w.max())) and np.isclose(row["median"], np.median(w.numpy()))
    assert abs(row["kurtosis"]) < 0.5  # He-initialised: Gaussian, excess kurtosis near 0


def test_findings_on_synthetic_curves():
    # a made-up table where every finding holds by construction, then one where none does
    kinds = {"c1": "conv", "c2": "conv", "c3": "conv", "d1": "dense", "out": "output"}
    rows = []
    for depth, (layer, kind) in enumerate(kinds.items()):
        for t in TREATMENTS:
            for a in np.linspace(0, 1, 11):
                for r in range(3):
                    if kind == "output" and t == "node_knockout":
                        acc = 0.9 * (1 - a)
                    elif layer == "c1":
                        acc = 0.9 - 0.8 * a
                    elif kind == "dense":
                        acc = 0.9 if a <= 0.8 else 0.5
                    else:
                        acc = 0.9 - 0.4 * a ** (depth + 1)
                    if t == "node_knockout" and kind != "output" and 0 < a:
                        acc -= 0.05
                    rows.append({"layer": layer, "depth": depth, "kind": kind, "treatment": t, "amount": a,
                                 "repeat": r, "top1": acc + 0.001 * r})
    table = pd.DataFrame(rows)
    got = findings(table, clean=0.9)
    assert {k: v["held"] for k, v in got.items()} == dict.fromkeys(got, True)
    assert linear_r2(table, "node_knockout", ["out"]) == pytest.approx(1.0)
    flipped = table.assign(top1=np.where(table.treatment == "node_knockout", 1.0, table.top1))
    assert findings(flipped, clean=0.9)["node_worse_than_synapse"]["held"] is False


def test_sweep_table_rows_and_kinds(alexnet, images):
    assert layer_kinds(alexnet)["dense2"] == "dense" and layer_kinds(alexnet)["dense3"] == "output"
    table = sweep_table(alexnet, images, {"gaussian": [0.0, 1.0]}, repeats=2, layers=["conv5", "dense3"],
                        progress=False)
    assert len(table) == 8 and set(table.kind) == {"conv", "output"}
    with pytest.raises(ValueError, match="unknown treatments"):
        sweep_table(alexnet, images, {"noise": [1.0]}, repeats=1)


def test_imagenet_pipeline_on_the_sample_with_untrained_weights(tmp_path, monkeypatch):
    if not SAMPLE.is_dir():
        pytest.skip(f"{SAMPLE} is not on this machine")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: no weights
    with pytest.raises(MissingWeightsError, match="no ImageNet weights for alexnet: .*alexnet-owt"):
        imagenet_model("alexnet")
    torch.manual_seed(0)
    model = imagenet_model("alexnet", pretrained=False).eval()
    folder = imagenet_folder(SAMPLE, SAMPLE / "labels.csv", transform=imagenet_eval_transform())
    loader = torch.utils.data.DataLoader(folder, batch_size=50)
    assert sorted({int(y) for _, y in folder.samples})[:3] == [0, 10, 20]
    faults = [Fault("classifier.6", "node_knockout", 0.5), Fault("classifier.6", "node_knockout", 1.0),
              Fault("classifier.6", "gaussian", 0.0)]
    acc = sweep(model, loader, faults, progress=False)
    assert acc.shape == (3, 2) and np.all(acc <= 1)
    assert np.all(acc[1] <= 0.05)  # every output 0: any 5 of the 1000 classes hold at most 5 of the 100 images


def test_sweep_table_layer_by_layer_equals_one_sweep_and_resumes_from_the_cache(alexnet, images, monkeypatch):
    from aann import cache, robustness
    grids = {"synapse_knockout": [0.0, 0.5], "gaussian": [1.0]}
    whole = sweep_table(alexnet, images, grids, repeats=2, layers=["conv5", "dense3"], progress=False, use_cache=False)
    before = dict(cache.USAGE)
    made = sweep_table(alexnet, images, grids, repeats=2, layers=["conv5", "dense3"], progress=False)
    # the same arithmetic by construction (each fault's draw, the per-layer groups): equal, not close
    pd.testing.assert_frame_equal(made, whole)
    assert cache.USAGE["sweeps made"] - before.get("sweeps made", 0) == 2

    def no_sweep(*args, **kwargs):
        raise AssertionError("a cached layer was swept again")

    monkeypatch.setattr(robustness, "sweep", no_sweep)
    read = sweep_table(alexnet, images, grids, repeats=2, layers=["conv5", "dense3"], progress=False)
    pd.testing.assert_frame_equal(read, whole)
    assert cache.USAGE["sweeps read"] - before.get("sweeps read", 0) == 2
    with pytest.raises(AssertionError, match="swept again"):  # other faults are not in the cache
        sweep_table(alexnet, images, {"gaussian": [2.0]}, repeats=1, layers=["conv5"], progress=False)
