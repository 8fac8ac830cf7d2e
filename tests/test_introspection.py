"""Self-introspection: activation capture, InfoVAE, estimator, section 2.8's reordering, FGSM,
misclassification-detection metrics, and the training options they need."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from aann.activations import capture, check_layers, layer_sizes, record_training
from aann.adversarial import targeted_fgsm
from aann.detection import auroc, average_precision, detection_report, fpr_at_tpr, msp_error_score, roc_curve
from aann.infovae import AutoencoderConfig, encode, mmd, train_infovae
from aann.introspection import (EstimatorConfig, assign_units, brainbow, class_densities, expected_latent,
                                fit_self_introspection, latent_grid, permute_h, reorder_network, train_estimator,
                                unit_order)
from aann.models import get_model
from aann.training import TrainConfig, classifier_error, input_noise, mse_sigmoid, triangular_lr


def small_mlp(depth=3, hidden=16):
    torch.manual_seed(0)
    return get_model("elu_mlp", hidden=hidden, depth=depth).eval()


# --- models and training options -----------------------------------------------------------------


def test_net1_and_net2_shapes_and_hidden_layers():
    net1 = get_model("elu_mlp")
    assert net1.hidden_layers == tuple(f"hidden{i}" for i in range(12))
    assert net1(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    net2 = get_model("allconv_elu", width=0.125, dense=32)
    assert net2.hidden_layers == ("dense0", "dense1", "dense2")
    assert net2(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert layer_sizes(net2, torch.rand(1, 3, 32, 32)) == {"dense0": 32, "dense1": 32, "dense2": 32}
    # the paper's widths at width 1
    assert get_model("allconv_elu").conv4[0].out_channels == 192


def test_classifier_error_is_half_squared_distance_to_one_hot():
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0]])
    y = torch.tensor([1, 0])
    e = classifier_error(logits, y)
    assert torch.allclose(e, torch.tensor([0.5 * (0.25 + 0.25), 0.5 * 2 * (1 / (1 + math.exp(10))) ** 2]))
    assert torch.isclose(mse_sigmoid(logits, y), e.mean())


def test_triangular_lr_rises_falls_and_decays():
    f = triangular_lr(10, decay=0.5)
    values = [f(s) for s in range(20)]
    assert values[0] < 0.2 and max(values[:10]) >= 0.89 and values[9] < 0.2
    assert max(values[10:]) == pytest.approx(0.5 * max(values[:10]))
    assert all(0 <= v <= 1 for v in values)


def test_input_noise_is_seeded_and_bounded():
    add = input_noise(1.0)
    x = torch.zeros(4, 1, 5, 5)
    a, b = add(x, torch.Generator().manual_seed(1)), add(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.abs().sum() > 0


@pytest.mark.parametrize("kwargs, match", [(dict(loss="hinge"), "unknown loss"), (dict(schedule="step"), "unknown schedule"),
                                           (dict(input_noise=-0.1), "input_noise")])
def test_train_config_rejects_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(model="elu_mlp", **kwargs)


# --- activation capture ----------------------------------------------------------------------------


def test_capture_concatenates_the_named_layers_in_order():
    net = small_mlp()
    x = torch.rand(5, 1, 28, 28)
    h, logits = capture(net, x, ["hidden0", "hidden2"], batch_size=2)
    first = nn.functional.elu(net.hidden0[0](x.flatten(1)))
    assert h.shape == (5, 32)
    assert torch.allclose(h[:, :16], first, atol=1e-6)
    assert torch.allclose(logits, net(x), atol=1e-6)
    default, _ = capture(net, x)
    assert default.shape == (5, 48)


def test_unknown_layer_is_a_clear_error():
    with pytest.raises(ValueError, match=r"^unknown layer\(s\) \['hidden7'\].*submodules are: .*hidden0"):
        check_layers(small_mlp(), ["hidden7"])


def test_record_training_keeps_every_epoch_and_is_cached(tiny_mnist_like):
    config = TrainConfig(model="elu_mlp", model_kwargs=dict(hidden=16, depth=2), epochs=2, weight_decay=0.0,
                         loss="mse_sigmoid", schedule="triangular")
    samples = tiny_mnist_like["train"].subset(20)
    model, meta, record = record_training(tiny_mnist_like, config, samples, seed=0)
    assert record.shape == (3, 20, 32)
    assert torch.allclose(record[-1], capture(model, samples.x)[0])
    assert not torch.allclose(record[0], record[-1])
    again_model, _, again = record_training(tiny_mnist_like, config, samples, seed=0)
    assert torch.equal(again, record)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again_model.state_dict().values()))


# --- InfoVAE and estimator -------------------------------------------------------------------------


def test_mmd_is_near_zero_for_the_prior_and_large_for_a_shifted_cloud():
    g = torch.Generator().manual_seed(0)
    prior = torch.randn(400, 2, generator=g)
    same = torch.randn(400, 2, generator=g)
    assert abs(mmd(same, prior).item()) < 0.05
    assert mmd(same + 3.0, prior).item() > 0.5
    with pytest.raises(ValueError, match="at least 2"):
        mmd(same[:1], prior)


def test_infovae_codes_follow_the_prior_and_reconstruct():
    g = torch.Generator().manual_seed(0)
    latent = torch.randn(1500, 2, generator=g)
    h = torch.tanh(latent @ torch.randn(2, 30, generator=g)) * torch.linspace(0.1, 10, 30)  # 2-D data, mixed scales
    vae, meta = train_infovae(h, AutoencoderConfig(epochs=15, hidden=64), seed=0, progress=False)
    z = encode(vae, h)
    assert meta["reconstruction_r2"] > 0.8
    assert z.mean(0).abs().max() < 0.3 and ((z.std(0) > 0.6) & (z.std(0) < 1.5)).all()
    again, _ = train_infovae(h, AutoencoderConfig(epochs=15, hidden=64), seed=0, progress=False)  # from the cache
    assert torch.equal(encode(again, h), z)


def test_estimator_regresses_a_function_of_z():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2000, 2, generator=g)
    target = -2 + z[:, 0] - 0.5 * z[:, 1] ** 2
    est, meta = train_estimator(z, target, EstimatorConfig(epochs=10, hidden=32), seed=0, progress=False)
    with torch.no_grad():
        assert (est(z) - target).pow(2).mean() < 0.05 * target.var()
    assert meta["history"][-1] < meta["history"][0]


def test_fit_self_introspection_end_to_end(tiny_mnist_like):
    config = TrainConfig(model="elu_mlp", model_kwargs=dict(hidden=16, depth=2), epochs=3, weight_decay=0.0,
                         loss="mse_sigmoid", schedule="triangular")
    system, info = fit_self_introspection(tiny_mnist_like, config, AutoencoderConfig(epochs=2, hidden=16),
                                          EstimatorConfig(epochs=2, hidden=16), seed=0)
    reading = system(tiny_mnist_like["test"].x)
    assert reading.z.shape == (256, 2) and reading.h.shape == (256, 32)
    assert torch.allclose(reading.confidence, -reading.log10_error)
    with torch.no_grad():
        assert torch.allclose(reading.logits, system.classifier(tiny_mnist_like["test"].x), atol=1e-6)
    assert torch.equal(reading.prediction, reading.logits.argmax(1))
    assert system.read(reading.h).logits is None and (system.read(reading.h).prediction == -1).all()
    assert info["record"] is None and info["h"].shape == (512, 32)


# --- section 2.8 ------------------------------------------------------------------------------------


def test_class_densities_integrate_to_one_and_give_class_means():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[-1.5, 0.5], [1.0, -1.0], [0.0, 2.0]])
    y = torch.arange(3).repeat_interleave(500)
    z = centres[y] + 0.3 * torch.randn(1500, 2, generator=g)
    dens = class_densities(z, y, 3, points=121)
    _, dz = latent_grid(points=121)
    assert torch.allclose(dens.sum((1, 2)) * dz * dz, torch.ones(3, dtype=dens.dtype))
    ez = expected_latent(dens)
    assert (ez - torch.stack([z[y == k].mean(0) for k in range(3)])).abs().max() < 0.05
    with pytest.raises(ValueError, match="class 3"):
        class_densities(z, y, 4)


def test_unit_order_sorts_by_class_then_strength():
    e = torch.tensor([[0.9, 0.1, 0.5, 0.0],
                      [0.0, 0.8, 0.2, 0.7]])  # units 0, 2 -> class 0 (0.9 > 0.5); 1, 3 -> class 1 (0.8 > 0.7)
    sizes = {"a": 4}
    assert assign_units(e).tolist() == [0, 1, 0, 1]
    assert unit_order(e, sizes)["a"].tolist() == [0, 2, 1, 3]
    h = torch.arange(8.0).view(1, 8)
    two = {"a": 4, "b": 4}
    order = {"a": torch.tensor([3, 2, 1, 0]), "b": torch.tensor([0, 1, 2, 3])}
    assert permute_h(h, order, two).tolist() == [[3, 2, 1, 0, 4, 5, 6, 7]]


def test_reordered_network_computes_the_same_function():
    net = small_mlp(depth=3)
    g = torch.Generator().manual_seed(1)
    order = {f"hidden{i}": torch.randperm(16, generator=g) for i in range(3)}
    new = reorder_network(net, order)
    x = torch.rand(7, 1, 28, 28)
    sizes = {f"hidden{i}": 16 for i in range(3)}
    h_old, out_old = capture(net, x)
    h_new, out_new = capture(new, x)
    assert torch.allclose(out_new, out_old, atol=1e-5)
    assert torch.allclose(h_new, permute_h(h_old, order, sizes), atol=1e-6)
    assert not torch.equal(new.hidden0[0].weight, net.hidden0[0].weight)
    with pytest.raises(ValueError, match="followed by no Linear"):
        reorder_network(net, {"output": torch.arange(10)})


def test_brainbow_colours_single_class_units_fully_and_shared_units_grey():
    palette = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    e = torch.tensor([[3.0, 0.0, 0.5],
                      [0.0, 0.0, 0.5],
                      [0.0, 0.2, 0.5]])  # unit 0 serves class 0, unit 1 class 2 (on its own scale), unit 2 all
    colours = brainbow(e, {"a": 3}, palette)
    assert torch.allclose(colours[0], torch.tensor([1.0, 0, 0]))
    assert torch.allclose(colours[1], torch.tensor([0, 0, 1.0]))
    assert torch.allclose(colours[2], torch.full((3,), 1 / 3))
    with pytest.raises(ValueError, match="one RGB colour per class"):
        brainbow(e, {"a": 3}, palette[:2])
    with pytest.raises(ValueError, match="units in all"):
        brainbow(e, {"a": 4}, palette)


# --- FGSM -------------------------------------------------------------------------------------------


def test_targeted_fgsm_steps_by_eps_stays_in_range_and_moves_towards_the_target():
    net = small_mlp(depth=2)
    x = torch.rand(4, 1, 28, 28)
    target = torch.tensor([3, 3, 7, 7])
    path = targeted_fgsm(net, x, target, eps=0.01, steps=20)
    assert path.shape == (21, 4, 1, 28, 28)
    assert torch.equal(path[0], x)
    assert (path[1:] - path[:-1]).abs().max() <= 0.01 + 1e-6
    assert path.min() >= 0 and path.max() <= 1
    with torch.no_grad():
        before, after = classifier_error(net(path[0]), target), classifier_error(net(path[-1]), target)
    assert (after < before).all()
    with pytest.raises(ValueError, match="eps > 0"):
        targeted_fgsm(net, x, target, eps=0)


# --- detection metrics ------------------------------------------------------------------------------


def test_detection_metrics_on_known_cases():
    positives = np.array([1, 1, 0, 0, 0], bool)
    perfect = np.array([0.9, 0.8, 0.3, 0.2, 0.1])
    assert auroc(perfect, positives) == 1.0 and average_precision(perfect, positives) == 1.0
    assert fpr_at_tpr(perfect, positives) == 0.0
    assert auroc(-perfect, positives) == 0.0
    assert auroc(np.zeros(5), positives) == 0.5  # all tied
    fpr, tpr = roc_curve(perfect, positives)
    assert fpr[0] == 0 and tpr[-1] == 1 and fpr[-1] == 1
    assert set(detection_report(perfect, positives)) == {"auroc", "aupr", "fpr_at_95tpr"}
    with pytest.raises(ValueError, match="at least one positive"):
        auroc(perfect, np.ones(5, bool))


def test_msp_error_score_ranks_as_max_softmax_without_saturating():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 10, generator=g) * 3
    score = msp_error_score(logits.numpy())
    msp = torch.softmax(logits.double(), 1).max(1).values.numpy()
    np.testing.assert_allclose(score, np.log(1 / msp - 1), rtol=1e-9, atol=1e-12)  # msp = 1 / (1 + e^s)
    # confident logits: float32 softmax says 1.0 for all three, the score still orders them
    sure = np.array([[30.0, 0.0, 0.0], [40.0, 0.0, 0.0], [50.0, 1.0, 0.0]], dtype=np.float32)
    assert (torch.softmax(torch.from_numpy(sure), 1).max(1).values == 1.0).all()
    assert np.all(np.diff(msp_error_score(sure)) < 0)
    with pytest.raises(ValueError, match="K >= 2"):
        msp_error_score(np.zeros((5, 1)))


def test_detection_metrics_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(5):
        positives = rng.random(400) < 0.15
        scores = np.round(rng.normal(size=400) + positives, 1)  # rounding makes ties
        assert auroc(scores, positives) == pytest.approx(metrics.roc_auc_score(positives, scores))
        assert average_precision(scores, positives) == pytest.approx(metrics.average_precision_score(positives, scores))
        fpr, tpr, _ = metrics.roc_curve(positives, scores, drop_intermediate=False)
        assert fpr_at_tpr(scores, positives) == pytest.approx(fpr[np.searchsorted(tpr, 0.95)])
