import copy

import pytest
import torch
import torch.nn.functional as F

from aann.data import Split
from aann.models import fold_batch_norm, get_model
from aann.neighbours import (NeighbourEvaluator, Swaps, apply_swap, distinct_distances, iter_neighbours, naive_accuracy,
                             neighbour_output_vectors, neighbour_weight_vectors, neighbourhood_size, sample_neighbours,
                             scan, undo_swap)
from aann.pruning import prune_to
from aann.ternary import sparse_layers, ternarize, value_counts


# the exactness tests run on every device there is: CUDA where a GPU is present (skipped elsewhere)
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


def ternary_net(name="mnist_net", sparsity=70, scale=0.03, seed=0, per_channel=False, device="cpu", **kwargs):
    """A sparse ternary net; a small scale keeps units in HardTanh's linear range, a large one
    saturates them (exact +-1 everywhere: ties)."""
    torch.manual_seed(seed)
    net = get_model(name, scale="channel" if per_channel else "layer", **kwargs)
    with torch.no_grad():
        for layer in sparse_layers(net).values():
            layer.weight.normal_(0, 1)
    prune_to(net, sparsity, scope="layer")
    ternarize(net)
    with torch.no_grad():
        for layer in sparse_layers(net).values():  # per channel: scales spread around `scale`
            layer.scale.copy_(scale * (0.5 + torch.rand_like(layer.scale)))
    return net.to(device)


def data_for(net, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    side = 96 if net.fc.out_features == 3 else 28
    split = Split(torch.rand(n, 1, side, side, generator=g), torch.randint(0, net.fc.out_features, (n,), generator=g))
    return split.to(net.fc.weight.device)


def _state(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_sampling_is_distinct_seeded_and_valid():
    net = ternary_net()
    a = sample_neighbours(net, "fc", 500, seed=1)
    b = sample_neighbours(net, "fc", 500, seed=1)
    assert torch.equal(a.src, b.src) and torch.equal(a.dst, b.dst)
    assert len({(s, d) for s, d in zip(a.src.tolist(), a.dst.tolist())}) == 500
    t = net.fc.ternary_values().flatten()
    assert torch.all(t[a.src] != 0) and torch.all(t[a.dst] == 0)
    assert not torch.equal(a.src, sample_neighbours(net, "fc", 500, seed=2).src)


def test_enumeration_covers_the_whole_neighbourhood_once():
    net = ternary_net(sparsity=60)
    size = neighbourhood_size(net, "1.0")
    assert size == 160 * 240  # 400 weights, 60 % zeros
    pairs = [(s, d) for batch in iter_neighbours(net, "1.0", batch_size=1000)
             for s, d in zip(batch.src.tolist(), batch.dst.tolist())]
    assert len(pairs) == size and len(set(pairs)) == size


def test_swap_keeps_the_family_and_undo_is_bit_exact():
    net = ternary_net()
    before, counts = _state(net), value_counts(net)
    sw = sample_neighbours(net, "2.0", 3, seed=0)
    for i in range(3):
        v = net.layer2[0].ternary_values().flatten()[sw.src[i]].item()
        saved = apply_swap(net, "2.0", sw.src[i], sw.dst[i])
        t = net.layer2[0].ternary_values().flatten()
        assert t[sw.src[i]] == 0 and t[sw.dst[i]] == v
        assert value_counts(net) == counts
        undo_swap(net, "2.0", sw.src[i], sw.dst[i], saved)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_errors_say_what_is_possible():
    net = ternary_net(sparsity=60)
    with pytest.raises(ValueError, match=r"has 38400 first neighbours; asked for 38401 \(allowed: 1 to 38400\)"):
        sample_neighbours(net, "1.0", 38401)
    with pytest.raises(ValueError, match="unknown layer '3.0'; this model's layers are 1.0, 2.0, fc"):
        sample_neighbours(net, "3.0", 1)
    with pytest.raises(ValueError, match="unknown layer"):
        NeighbourEvaluator(net, data_for(net)).evaluate(Swaps("conv1", torch.tensor([0]), torch.tensor([1])))
    with pytest.raises(KeyError, match="unknown layer '3.0'"):
        neighbourhood_size(net, "3.0")
    dense = ternary_net(sparsity=0)
    with pytest.raises(ValueError, match=r"layer fc has 15680 nonzero and 0 zero weights"):
        sample_neighbours(dense, "fc", 1)
    with pytest.raises(ValueError, match="nonzero src and a zero dst"):
        sw = sample_neighbours(net, "fc", 1)
        apply_swap(net, "fc", sw.dst[0], sw.src[0])


# The evaluator is compared with a float64 forward pass of a deep copy (``_reference_logits``): two
# code paths, so logits agree to 1e-12, not bit for bit. Predictions are compared exactly: a
# near-tie within 1e-12 is not met on these data, and the exact ties of the saturated nets are exact
# in any summation order (float32 weights times +-1 activations, summed in float64 without rounding).
def _reference_logits(net, data, swaps):
    ref = copy.deepcopy(net).double()
    out = []
    with torch.no_grad():
        for i in range(len(swaps)):
            saved = apply_swap(ref, swaps.layer, swaps.src[i], swaps.dst[i])
            out.append(ref(data.x.double()))
            undo_swap(ref, swaps.layer, swaps.src[i], swaps.dst[i], saved)
    return torch.stack(out)


def _same_channel_swaps(net, layer, n):
    """Swaps whose nonzero and zero weight feed the same output unit (one channel changes twice)."""
    t = sparse_layers(net)[layer].ternary_values()
    per = t[0].numel()
    src, dst = [], []
    for o in range(t.shape[0]):
        row = t[o].flatten()
        nz, z = (row != 0).nonzero().flatten(), (row == 0).nonzero().flatten()
        if len(nz) and len(z):
            src.append(o * per + nz[0].item())
            dst.append(o * per + z[-1].item())
        if len(src) == n:
            break
    return Swaps(layer, torch.tensor(src), torch.tensor(dst))


@pytest.mark.parametrize("name,kwargs", [("mnist_net", {}), ("mnist_net", {"clamp_output": True}), ("car_net", {})])
@pytest.mark.parametrize("scale", [0.03, 2.0])  # linear range / saturated, with exact ties
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_fast_evaluation_equals_a_full_forward_pass(name, kwargs, scale, per_channel, device):
    net = ternary_net(name, scale=scale, per_channel=per_channel, device=device, **kwargs)
    data = data_for(net)
    ev = NeighbourEvaluator(net, data)
    for layer in sparse_layers(net):
        swaps = sample_neighbours(net, layer, 12, seed=3)
        same = _same_channel_swaps(net, layer, 4)
        swaps = Swaps(layer, torch.cat([swaps.src, same.src]), torch.cat([swaps.dst, same.dst]))
        acc, logits = ev.evaluate(swaps, return_logits=True, batch_size=5)
        ref = _reference_logits(net, data, swaps)
        assert torch.equal(logits.argmax(-1), ref.argmax(-1)), layer  # predictions: exactly equal
        assert torch.allclose(logits, ref, rtol=0, atol=1e-12), layer
        ref_acc = (ref.argmax(-1) == data.y).double().mean(1)
        assert torch.equal(acc, ref_acc), layer
        if scale < 1:  # in the linear range swaps move logits (saturated nets may not move any;
            # a swap into a unit whose outgoing weights are all 0 moves none, even here)
            assert sum(not torch.equal(logits[i], ev.logits) for i in range(len(swaps))) >= len(swaps) // 2
    if scale == 2.0 and kwargs.get("clamp_output"):
        assert (ev.logits == 1.0).sum(1).gt(1).any()  # the saturated case really has ties


@pytest.mark.parametrize("name", ["mnist_net", "car_net"])
def test_batches_sharing_swapped_weights_are_exact(name):
    """Enumerated batches share each source weight across many swaps (and destinations across
    sources): the evaluator computes each shared term once; the result must not change."""
    net = ternary_net(name, sparsity=90)
    data = data_for(net, n=24)
    ev = NeighbourEvaluator(net, data)
    for layer in sparse_layers(net):
        swaps = next(iter_neighbours(net, layer, batch_size=300))
        assert len(set(swaps.src.tolist())) < len(swaps)
        acc, logits = ev.evaluate(swaps, return_logits=True, batch_size=300)
        ref = _reference_logits(net, data, swaps)
        assert torch.equal(logits.argmax(-1), ref.argmax(-1)), layer
        assert torch.allclose(logits, ref, rtol=0, atol=1e-12), layer


@pytest.mark.parametrize("name", ["mnist_net", "car_net"])
def test_swaps_grouped_by_source_are_exact(name):
    """Swaps from a few source weights are computed per source (base + one gathered row), in
    sub-batches when memory is small; every layer, including one whose next stage gives the logits."""
    net = ternary_net(name, sparsity=90)
    data = data_for(net, n=6)
    ev = NeighbourEvaluator(net, data, chunk_elems=20_000)
    for layer in sparse_layers(net):
        t = sparse_layers(net)[layer].ternary_values().flatten()
        nonzero, zero = (t != 0).nonzero().flatten(), (t == 0).nonzero().flatten()
        src = nonzero[:3].repeat_interleave(15)
        dst = zero[torch.randperm(len(zero), generator=torch.Generator().manual_seed(0))[:45]]
        swaps = Swaps(layer, src, dst)
        acc, logits = ev.evaluate(swaps, return_logits=True, batch_size=45)
        ref = _reference_logits(net, data, swaps)
        assert torch.equal(logits.argmax(-1), ref.argmax(-1)), layer
        assert torch.allclose(logits, ref, rtol=0, atol=1e-12), layer


@pytest.mark.parametrize("shared", [False, True])  # random swaps / swaps sharing sources (grouped)
def test_chunking_does_not_change_results(shared):
    net = ternary_net()
    data = data_for(net, n=50)
    swaps = next(iter_neighbours(net, "1.0", batch_size=64)) if shared else sample_neighbours(net, "1.0", 7, seed=0)
    big = NeighbourEvaluator(net, data).evaluate(swaps, return_logits=True, batch_size=64)
    small = NeighbourEvaluator(net, data, chunk_elems=5000).evaluate(swaps, return_logits=True, batch_size=3 + 61 * shared)
    assert torch.equal(big[0], small[0])  # accuracies and predictions: identical
    assert torch.equal(big[1].argmax(-1), small[1].argmax(-1))
    assert torch.allclose(big[1], small[1], rtol=0, atol=1e-12)  # other batch shapes, other rounding


def test_naive_reference_agrees_on_a_float32_forward():
    net = ternary_net(scale=2.0)  # saturated: float32 and float64 agree exactly
    data = data_for(net)
    swaps = sample_neighbours(net, "fc", 5, seed=0)
    assert torch.equal(naive_accuracy(net, data, swaps), NeighbourEvaluator(net, data).evaluate(swaps))


def test_output_vectors_are_each_swapped_networks_softmax_and_leave_the_network_as_it_was():
    net = ternary_net(scale=0.5)
    data = data_for(net, n=16)
    swaps = sample_neighbours(net, "2.0", 4, seed=1)
    before = _state(net)
    out = neighbour_output_vectors(net, "2.0", swaps, data.x)
    assert out.shape == (5, 16 * 10)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    for i in range(len(swaps)):
        swapped = copy.deepcopy(net)
        apply_swap(swapped, "2.0", swaps.src[i], swaps.dst[i])
        assert torch.allclose(out[i + 1], torch.softmax(swapped(data.x), dim=1).flatten(), atol=1e-6)
    assert torch.allclose(out[0], torch.softmax(net(data.x), dim=1).flatten(), atol=1e-6)


def test_distinct_distances_tell_equidistant_points_from_structured_ones():
    assert distinct_distances(torch.eye(6)) == (1, 1.0)  # every pair at sqrt(2)
    n, share = distinct_distances(torch.tensor([[0.0], [1.0], [3.0], [7.0]]))
    assert n == 6 and share == pytest.approx(1 / 6)
    # neighbours of one layer share at most a few coordinates: few distinct distances
    net = ternary_net()
    x = neighbour_weight_vectors(net, "fc", sample_neighbours(net, "fc", 50, seed=0))
    assert distinct_distances(x)[0] <= 4


def test_dense_layers_are_refused():
    net = get_model("mnist_net")
    prune_to(net, 50, scope="layer")
    ev = NeighbourEvaluator(net, data_for(net))
    with pytest.raises(ValueError, match="not ternary"):
        ev.evaluate(sample_neighbours(net, "fc", 2))


def test_a_neighbour_with_the_same_correct_count_compares_equal():
    net = ternary_net(scale=2.0, clamp_output=True)  # saturated: many swaps change nothing
    data = data_for(net, n=97)  # 1/97 has no exact binary representation
    ev = NeighbourEvaluator(net, data)
    acc = ev.evaluate(sample_neighbours(net, "1.0", 30, seed=0))
    assert (acc == ev.base_accuracy).any()
    assert ev.base_accuracy == int(ev.base_correct.sum()) / 97


@pytest.mark.parametrize("layer", ["1.0", "2.0", "fc"])
def test_neighbour_losses_are_the_cross_entropy_of_their_logits(layer):
    net = ternary_net(scale=0.03)
    data = data_for(net, n=40)
    ev = NeighbourEvaluator(net, data, chunk_elems=4000)  # several image chunks: the loss sums over them
    swaps = sample_neighbours(net, layer, 9, seed=1)
    T = 0.02
    acc, loss, logits = ev.evaluate(swaps, return_logits=True, batch_size=4, loss_temperature=T)
    ref = _reference_logits(net, data, swaps)
    expected = torch.stack([F.cross_entropy(z / T, data.y) for z in ref])
    assert torch.allclose(loss, expected, rtol=1e-10, atol=0)
    assert torch.equal(acc, ev.evaluate(swaps, batch_size=4))
    assert ev.base_loss(T) == pytest.approx(F.cross_entropy(ev.logits / T, data.y).item(), rel=1e-12)
    assert len(set(loss.tolist())) > 1  # the loss tells neighbours apart
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            ev.evaluate(swaps, loss_temperature=bad)


def test_scan_with_losses_takes_the_lowest_loss():
    net = ternary_net(sparsity=99, scale=0.03)
    data = data_for(net, n=20)
    ev = NeighbourEvaluator(net, data)
    result = scan(ev, iter_neighbours(net, "1.0", batch_size=500), progress=False, loss_temperature=0.05)
    everything = next(iter(iter_neighbours(net, "1.0", batch_size=1584)))
    acc, loss = ev.evaluate(everything, batch_size=512, loss_temperature=0.05)
    i = int(loss.argmin())
    assert torch.equal(result.loss, loss.float()) and torch.equal(result.acc, acc.float())
    assert (result.best_src, result.best_dst) == (int(everything.src[i]), int(everything.dst[i]))
    assert result.best_loss == loss[i].item() and result.best_acc == acc[i].item()


def test_scan_of_a_whole_neighbourhood_matches_evaluating_it_at_once():
    net = ternary_net(sparsity=99)  # layer 1.0: 4 nonzero x 396 zero = 1,584 neighbours
    data = data_for(net, n=20)
    ev = NeighbourEvaluator(net, data)
    result = scan(ev, iter_neighbours(net, "1.0", batch_size=500), total=4, progress=False)
    everything = [s for s in iter_neighbours(net, "1.0", batch_size=1584)][0]
    direct = ev.evaluate(everything, batch_size=512)
    assert len(result.acc) == neighbourhood_size(net, "1.0") == 1584
    assert torch.equal(result.acc, direct.float())
    first_best = int(direct.argmax())
    assert (result.best_src, result.best_dst) == (int(everything.src[first_best]), int(everything.dst[first_best]))
    assert result.best_acc == direct.max().item()
    with pytest.raises(ValueError, match="no neighbours"):
        scan(ev, [], progress=False)


@pytest.mark.parametrize("name,kwargs", [("mnist_net", {}), ("mnist_net", {"clamp_output": True}), ("car_net", {})])
@pytest.mark.parametrize("scale", [0.03, 2.0])  # linear range / saturated, with exact ties
@pytest.mark.parametrize("device", DEVICES)
def test_evaluator_follows_moves_as_a_fresh_one_would(name, kwargs, scale, device):
    """A move updates the caches incrementally (hidden layers): after each of a chain of moves in
    every layer, including two weights of one channel, the predictions and accuracy equal a fresh
    evaluator's, the cached activations agree to rounding, and the accuracy is the one the
    neighbour was scored with before the move."""
    net = ternary_net(name, scale=scale, device=device, **kwargs)
    data = data_for(net, n=40)
    ev = NeighbourEvaluator(net, data)
    replayed = NeighbourEvaluator(net, data)  # follows the whole path at the end
    path = []
    for rnd in range(2):
        for layer in sparse_layers(net):
            for swaps in (sample_neighbours(net, layer, 3, seed=rnd), _same_channel_swaps(net, layer, 1)):
                src, dst = int(swaps.src[0]), int(swaps.dst[0])
                scored = ev.evaluate(swaps[0])[0].item()
                apply_swap(net, layer, src, dst)
                ev.apply_swap(layer, src, dst)
                path.append((layer, src, dst))
                moves = len(path)
                fresh = NeighbourEvaluator(net, data)
                assert torch.equal(ev.logits.argmax(-1), fresh.logits.argmax(-1)), (layer, moves)
                assert ev.base_accuracy == fresh.base_accuracy == scored, (layer, moves)
                for mine, theirs in zip(ev.a + ev.z + [ev.logits], fresh.a + fresh.z + [fresh.logits]):
                    assert torch.allclose(mine, theirs, rtol=0, atol=1e-12), (layer, moves)
    assert len(path) == 2 * 2 * len(sparse_layers(net))
    replayed.follow(path)  # runs of output-layer moves recomputed once: the same bits
    for mine, theirs in zip(replayed.a + replayed.z + [replayed.logits], ev.a + ev.z + [ev.logits]):
        assert torch.equal(mine, theirs)
    assert torch.equal(replayed.base_correct, ev.base_correct)


@pytest.mark.parametrize("name,kwargs", [("mnist_net", {}), ("mnist_net", {"clamp_output": True}), ("car_net", {})])
@pytest.mark.parametrize("scale", [0.03, 2.0])  # linear range / saturated, with exact ties among the logits
@pytest.mark.parametrize("device", DEVICES)
def test_output_layer_accuracy_without_logits_equals_the_logits_argmax(name, kwargs, scale, device):
    """Accuracy alone, for the output layer, comes from the top three logits per image instead of
    all new logits: it must give exactly the predictions of the full logits (ties included), also
    after moves and across image chunks."""
    net = ternary_net(name, scale=scale, device=device, **kwargs)
    data = data_for(net, n=80)
    evaluators = [NeighbourEvaluator(net, data, chunk_elems=c) for c in (None, 3000)]  # one chunk / several
    for move in range(3):
        swaps = sample_neighbours(net, "fc", 24, seed=move)
        same = _same_channel_swaps(net, "fc", 6)
        swaps = Swaps("fc", torch.cat([swaps.src, same.src]), torch.cat([swaps.dst, same.dst]))
        ref_acc = (_reference_logits(net, data, swaps).argmax(-1) == data.y).double().mean(1)
        src, dst = int(swaps.src[0]), int(swaps.dst[0])
        apply_swap(net, "fc", src, dst)
        for ev in evaluators:
            assert torch.equal(ev.evaluate(swaps, batch_size=17), ref_acc)
            ev.apply_swap("fc", src, dst)
    if scale == 2.0 and kwargs.get("clamp_output"):
        assert (ev.logits == 1.0).sum(1).gt(1).any()  # the saturated case really has ties


@pytest.mark.parametrize("name,kwargs,per_channel", [("mnist_net", {}, False), ("mnist_net", {"clamp_output": True}, True),
                                                     ("car_net", {}, False)])
@pytest.mark.parametrize("position", [-1, -2])  # the output layer, the layer before it
@pytest.mark.parametrize("device", DEVICES)
def test_images_certified_keep_their_predictions(name, kwargs, per_channel, position, device):
    """Images whose top logit leads by more than any swap of the layer can move two logits are
    counted once, not scored per neighbour: the accuracies must equal a full forward pass's, with
    some, none and all images certified, and after a move in the layer."""
    net = ternary_net(name, per_channel=per_channel, device=device, **kwargs)
    layer = list(sparse_layers(net))[position]
    data = data_for(net, n=60)
    bias = net.fc.bias[1].item()

    def lifted(lift):  # class 1 raised by lift: the fraction of images certified
        with torch.no_grad():
            net.fc.bias[1] = bias + lift
        return NeighbourEvaluator(net, data).certified_fraction(layer)

    lo, hi = 0.0, 1.0
    while lifted(hi) < 0.9:
        lo, hi = hi, 2 * hi
    for _ in range(40):  # bisect to a lift that certifies some images but not all
        fraction = lifted((lo + hi) / 2)
        if 0.1 < fraction < 0.9:
            break
        lo, hi = ((lo + hi) / 2, hi) if fraction <= 0.1 else (lo, (lo + hi) / 2)
    assert 0.1 < fraction < 0.9, fraction
    swaps = sample_neighbours(net, layer, 30, seed=0)
    same = _same_channel_swaps(net, layer, 6)
    swaps = Swaps(layer, torch.cat([swaps.src, same.src]), torch.cat([swaps.dst, same.dst]))
    ref_acc = (_reference_logits(net, data, swaps).argmax(-1) == data.y).double().mean(1)
    ev = NeighbourEvaluator(net, data)
    assert torch.equal(ev.evaluate(swaps, batch_size=13), ref_acc)
    every = NeighbourEvaluator(net, data, certify=False)
    assert every.certified_fraction(layer) == 0.0
    assert torch.equal(every.evaluate(swaps, batch_size=13), ref_acc)
    src, dst = int(swaps.src[0]), int(swaps.dst[0])  # a move: the certificate is recomputed
    apply_swap(net, layer, src, dst)
    ev.apply_swap(layer, src, dst)
    ref_acc = (_reference_logits(net, data, swaps[1:]).argmax(-1) == data.y).double().mean(1)
    assert torch.equal(ev.evaluate(swaps[1:], batch_size=13), ref_acc)
    with torch.no_grad():  # class 1 far ahead on every image: nothing left to score
        net.fc.bias[1] += 1000
    ev = NeighbourEvaluator(net, data)
    assert ev.certified_fraction(layer) == 1.0
    assert torch.equal(ev.evaluate(swaps[1:]), torch.full((len(swaps) - 1,), ev.base_accuracy, dtype=torch.float64,
                                                          device=data.y.device))
    assert NeighbourEvaluator(net, data).certified_fraction(list(sparse_layers(net))[-3]) == 0.0  # further back: none


def test_batch_norm_nets_are_evaluated_folded():
    net = ternary_net("mnist_net", batch_norm=True)
    with torch.no_grad():  # running statistics and affine parameters away from the identity
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.05, 0.05), m.running_var.uniform_(0.5, 2), m.weight.normal_(1, 0.5)
    net.eval()
    data = data_for(net)
    with pytest.raises(TypeError, match="fold_batch_norm"):
        NeighbourEvaluator(net, data)
    folded = fold_batch_norm(net)
    ev = NeighbourEvaluator(folded, data)
    for layer in sparse_layers(folded):
        swaps = sample_neighbours(folded, layer, 8, seed=1)
        acc, logits = ev.evaluate(swaps, return_logits=True)
        ref = _reference_logits(folded, data, swaps)
        assert torch.equal(logits.argmax(-1), ref.argmax(-1)), layer
        # the folded network's neighbours are the original's: the same swap of the BN net agrees
        assert torch.equal(naive_accuracy(net, data, swaps), naive_accuracy(folded, data, swaps)), layer


@pytest.mark.parametrize("name", ["mnist_net", "car_net"])
def test_the_fused_step_gives_the_results_of_the_step_run_op_by_op(name):
    """``fuse=True`` compiles the scoring of hidden-layer neighbours into one loop: the same
    expression in the same order, so the same accuracies and losses and the logits to rounding,
    on swaps grouped by source and on random ones."""
    net = ternary_net(name, sparsity=90)
    data = data_for(net, n=24)
    plain, fused = NeighbourEvaluator(net, data, fuse=False), NeighbourEvaluator(net, data, fuse=True)
    for layer in list(sparse_layers(net))[:-1]:
        for swaps in (next(iter_neighbours(net, layer, batch_size=300)), sample_neighbours(net, layer, 40, seed=1)):
            a = plain.evaluate(swaps, return_logits=True, loss_temperature=1.0, batch_size=300)
            b = fused.evaluate(swaps, return_logits=True, loss_temperature=1.0, batch_size=300)
            assert torch.equal(a[0], b[0]), layer
            assert torch.allclose(a[1], b[1], rtol=0, atol=1e-12) and torch.allclose(a[2], b[2], rtol=0, atol=1e-12), layer
            assert torch.equal(b[0], plain.evaluate(swaps, batch_size=300)), layer


def test_where_the_fused_step_cannot_be_compiled_it_runs_uncompiled_with_a_warning(monkeypatch):
    from aann.neighbours import fused

    def no_compiler(fn):
        def fail(*args):
            raise RuntimeError("no C++ compiler found\nsecond line")
        return fail

    monkeypatch.setattr(fused, "_compiled", None)
    monkeypatch.setattr(fused, "_failed", False)
    monkeypatch.setattr(fused.torch, "compile", no_compiler)
    net = ternary_net("mnist_net", sparsity=90)
    data = data_for(net, n=12)
    swaps = sample_neighbours(net, "1.0", 20, seed=0)
    with pytest.warns(RuntimeWarning, match="could not be compiled \\(RuntimeError: no C\\+\\+ compiler found\\)"):
        acc = NeighbourEvaluator(net, data, fuse=True).evaluate(swaps)
    assert torch.equal(acc, NeighbourEvaluator(net, data, fuse=False).evaluate(swaps))
    assert fused._failed  # warned once; later calls go straight to the uncompiled function
