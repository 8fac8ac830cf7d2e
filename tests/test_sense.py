import pytest
import torch

from aann import sense as sense_module
from aann import sense_checkpoints as checkpoint_module
from aann import sense_climber as climber_module
from aann.ensembles import best_members, ensemble_accuracy
from aann.sense import (SenseConfig, exact_accuracy, random_sparse_ternary, search, sense,
                        temperature)
from aann.ternary import value_counts
from aann.training import accuracy


@pytest.fixture
def start():
    return random_sparse_ternary("mnist_net", 80, seed=0)


def _cfg(**kw):
    return SenseConfig(**{"schedule": "random", "steps": 6, "block": 2, "neighbours": 20, "seed": 1, **kw})


def test_climb_never_goes_down_keeps_the_family_and_leaves_the_input_alone(start, tiny_mnist_like):
    before = {k: v.clone() for k, v in start.state_dict().items()}
    res = sense(start, tiny_mnist_like["val"], _cfg(), report=tiny_mnist_like["test"], progress=False)
    assert all(torch.equal(v, start.state_dict()[k]) for k, v in before.items())
    val = res.history["val_acc"]
    assert all(b >= a for a, b in zip([res.member_val[0]] + val, val))  # a hill-climb
    assert len(res.history["layer"]) == 6 and res.history["evaluations"][-1] == 6 * 20
    net = res.network
    assert value_counts(net) == value_counts(start)  # one family
    assert accuracy(net, tiny_mnist_like["val"]) == pytest.approx(val[-1])
    assert accuracy(net, tiny_mnist_like["test"]) == pytest.approx(res.history["test_acc"][-1])
    assert len(res.member_val) == len(res.path) + 1 == sum(res.history["moved"]) + 1


def test_resumed_search_follows_the_same_trajectory(start, tiny_mnist_like, tmp_path, monkeypatch):
    cfg = _cfg(temperature=(0.01, 0.001))
    straight = sense(start, tiny_mnist_like["val"], cfg, progress=False)
    ck = tmp_path / "search.pt"
    first = sense(start, tiny_mnist_like["val"], cfg, checkpoint=ck, stop_after=2, progress=False)
    assert first.step == 2
    resumed = sense(start, tiny_mnist_like["val"], cfg, checkpoint=ck, progress=False)
    assert resumed.path == straight.path and resumed.history == straight.history
    # killed mid-search (not at a stop_after boundary): resumes from the last checkpoint written
    killed = tmp_path / "killed.pt"
    real, calls = sense_module.Climber.neighbourhood, []

    def dies_at_the_fifth_step(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(sense_module.Climber, "neighbourhood", dies_at_the_fifth_step)
    with pytest.raises(KeyboardInterrupt):
        sense(start, tiny_mnist_like["val"], cfg, checkpoint=killed, progress=False, checkpoint_every=0)
    monkeypatch.setattr(sense_module.Climber, "neighbourhood", real)
    assert sense(start, tiny_mnist_like["val"], cfg, checkpoint=killed, stop_after=0, progress=False).step == 4
    resumed = sense(start, tiny_mnist_like["val"], cfg, checkpoint=killed, progress=False)
    assert resumed.path == straight.path and resumed.history == straight.history
    # a checkpoint of another search is refused, with the reason
    with pytest.raises(ValueError, match="another search"):
        sense(start, tiny_mnist_like["val"], _cfg(seed=2), checkpoint=ck, progress=False)
    ck.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        sense(start, tiny_mnist_like["val"], cfg, checkpoint=ck, progress=False)


def test_a_finished_search_is_read_from_its_checkpoint_without_evaluating(start, tiny_mnist_like, tmp_path,
                                                                          monkeypatch):
    val, test = tiny_mnist_like["val"], tiny_mnist_like["test"]
    ck = tmp_path / "done.pt"
    done = sense(start, val, _cfg(), report=test, checkpoint=ck, progress=False)
    sense(start, val, _cfg(), checkpoint=tmp_path / "half.pt", stop_after=3, progress=False)

    def no_evaluator(*args, **kwargs):
        raise AssertionError("a finished search built an evaluator")

    monkeypatch.setattr(climber_module, "NeighbourEvaluator", no_evaluator)
    again = sense(start, val, _cfg(), report=test, checkpoint=ck, progress=False)
    assert (again.step, again.path, again.member_val, again.history) == (done.step, done.path, done.member_val,
                                                                         done.history)
    assert torch.equal(torch.cat([p.flatten() for p in again.network.parameters()]),
                       torch.cat([p.flatten() for p in done.network.parameters()]))
    # an unfinished one still evaluates
    with pytest.raises(AssertionError, match="built an evaluator"):
        sense(start, val, _cfg(), checkpoint=tmp_path / "half.pt", progress=False)


def test_a_longer_search_extends_a_shorter_one(start, tiny_mnist_like, tmp_path, monkeypatch):
    val = tiny_mnist_like["val"]
    straight = sense(start, val, _cfg(steps=8), progress=False)
    short = tmp_path / "short.pt"
    sense(start, val, _cfg(steps=5), checkpoint=short, progress=False)
    longer = tmp_path / "longer.pt"
    real, calls = sense_module.Climber.neighbourhood, []
    monkeypatch.setattr(sense_module.Climber, "neighbourhood", lambda *args: calls.append(1) or real(*args))
    extended = sense(start, val, _cfg(steps=8), checkpoint=longer, extends=short, progress=False)
    assert len(calls) == 3  # only the steps the shorter search did not take
    assert extended.path == straight.path and extended.history == straight.history
    # once the longer search has its own checkpoint, that one is resumed
    assert sense(start, val, _cfg(steps=8), checkpoint=longer, extends=short, stop_after=0, progress=False).step == 8
    # only the same search, shorter, and not annealing
    with pytest.raises(ValueError, match="another search"):
        sense(start, val, _cfg(steps=8, neighbours=10), extends=short, progress=False)
    with pytest.raises(ValueError, match="only extend a shorter"):
        sense(start, val, _cfg(steps=4), extends=short, progress=False)
    with pytest.raises(ValueError, match="annealing"):
        sense(start, val, _cfg(steps=8, temperature=(0.01, 0.001)), extends=short, progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sense(start, val, _cfg(steps=8), extends=tmp_path / "none.pt", progress=False)


def test_cross_entropy_fitness_climbs_the_loss_and_resumes(start, tiny_mnist_like, tmp_path):
    val = tiny_mnist_like["val"]
    cfg = _cfg(fitness="cross_entropy", steps=8)
    res = sense(start, val, cfg, progress=False)
    T = cfg.loss_temperature * float(start.fc.scale.detach().abs().mean())
    assert sense_module.loss_temperature(cfg, start) == pytest.approx(T)
    fit = res.history["fitness"]
    assert all(b >= a for a, b in zip(fit, fit[1:])) and fit[-1] > fit[0]  # minus the loss never falls
    logits = torch.cat([res.network.double()(x.double()) for x in val.x.split(64)])  # a float64 forward pass
    assert -fit[-1] == pytest.approx(torch.nn.functional.cross_entropy(logits / T, val.y).item(), rel=1e-9)
    assert res.history["val_acc"][-1] == res.member_val[-1]
    ck = tmp_path / "ce.pt"
    sense(start, val, cfg, checkpoint=ck, stop_after=3, progress=False)
    resumed = sense(start, val, cfg, checkpoint=ck, progress=False)
    assert resumed.path == res.path and resumed.history == res.history
    # the accuracy fitness keeps the paper's search: its history's fitness is the validation accuracy
    acc = sense(start, val, _cfg(), progress=False)
    assert acc.history["fitness"] == acc.history["val_acc"]


def _resumed_mid_block(start, select, cfg, folder, report=None):
    """The search stopped after the first step that leaves a block open, then resumed."""
    for k in range(1, cfg.steps):
        ck = folder / f"stopped-{k}.pt"
        if sense(start, select, cfg, report=report, checkpoint=ck, stop_after=k, progress=False).in_block:
            return sense(start, select, cfg, report=report, checkpoint=ck, progress=False)
    raise AssertionError("no step of this search leaves a block open")


def test_a_composite_move_takes_several_swaps_a_step_each_scored_before_it_is_taken(start, tiny_mnist_like,
                                                                                    tmp_path):
    val, test = tiny_mnist_like["val"], tiny_mnist_like["test"]
    cfg = _cfg(fitness="cross_entropy", steps=8, swaps_per_step=4)
    res = sense(start, val, cfg, report=test, progress=False)
    h = res.history
    assert max(h["swaps"]) > 1 and len(res.path) == sum(h["swaps"]) == len(res.member_val) - 1
    assert all(s <= 4 for s in h["swaps"]) and h["evaluations"][-1] > 8 * 20  # the re-scores count
    fit = h["fitness"]
    assert all(b >= a for a, b in zip(fit, fit[1:])) and fit[-1] > fit[0]
    assert value_counts(res.network) == value_counts(start)  # every swap a bit-swap: one family
    members = [0] + list(torch.cumsum(torch.tensor(h["swaps"]), 0))
    for i in {members[3], members[-1]}:  # a member's recorded selection accuracy is its own
        assert res.member_val[i] == exact_accuracy(res.member(i), val)
    assert h["test_acc"][-1] == exact_accuracy(res.network, test)
    resumed = _resumed_mid_block(start, val, cfg, tmp_path, report=test)
    assert resumed.path == res.path and resumed.history == res.history
    # one swap per step is the paper's search, in the same checkpoint file as before the option
    one = _cfg(fitness="cross_entropy", steps=8)
    assert "swaps_per_step" not in checkpoint_module.config_key(one)
    assert checkpoint_module.config_key(cfg)["swaps_per_step"] == 4
    plain = sense(start, val, one, progress=False)
    assert plain.history["swaps"] == [int(m) for m in plain.history["moved"]]
    # a checkpoint written before the option (its history without "swaps") resumes as one
    old = tmp_path / "old.pt"
    sense(start, val, one, checkpoint=old, stop_after=3, progress=False)
    saved = torch.load(old, weights_only=False)
    del saved["state"]["history"]["swaps"]
    torch.save(saved, old)
    assert sense(start, val, one, checkpoint=old, progress=False).history == plain.history
    # and a finished one, read back without running
    sense(start, val, one, checkpoint=old, progress=False)
    saved = torch.load(old, weights_only=False)
    del saved["state"]["history"]["swaps"]
    torch.save(saved, old)
    assert sense(start, val, one, checkpoint=old, progress=False).history == plain.history


def test_the_adaptive_schedule_rests_a_layer_that_finds_nothing_and_resumes(start, tiny_mnist_like, tmp_path):
    rests = sense_module.Rests(["1.0", "2.0", "fc"])
    for step in range(3):  # three steps in a row without a move: a rest of 2 ** 3 steps
        rests.update(step, "1.0", False)
    assert rests.awake(3) == ["2.0", "fc"] and rests.awake(3 + 8) == ["1.0", "2.0", "fc"]
    for step in range(3, 20):
        rests.update(step, "1.0", False)
    assert rests.until["1.0"] == 20 + sense_module.MAX_REST  # capped
    rests.update(20, "1.0", True)  # a move ends the rest
    assert rests.awake(21) == ["1.0", "2.0", "fc"]
    for layer in ("1.0", "2.0", "fc"):
        rests.update(22, layer, False)
    assert rests.awake(23) == ["1.0", "2.0", "fc"]  # every layer resting: all of them
    # a search: the history rebuilds the rests, and a resumed search follows the same trajectory
    val = tiny_mnist_like["val"]
    cfg = _cfg(schedule="adaptive", steps=16, neighbours=3, fitness="cross_entropy")  # moves and failures
    res = sense(start, val, cfg, progress=False)
    h = res.history
    assert not all(h["moved"])
    resting = 0  # block starts with a layer resting
    for step in range(1, len(h["layer"])):
        if not h["moved"][step - 1]:  # a new block: a layer awake then
            before = sense_module.Rests(["1.0", "2.0", "fc"], {k: v[:step] for k, v in h.items()})
            assert h["layer"][step] in before.awake(step)
            resting += len(before.awake(step)) < 3
    assert resting
    assert _resumed_mid_block(start, val, cfg, tmp_path).history == res.history


def test_schedules_visit_the_layers_they_promise(start, tiny_mnist_like):
    fc = sense(start, tiny_mnist_like["val"], _cfg(schedule="fc"), progress=False)
    assert set(fc.history["layer"]) == {"fc"}
    alt = sense(start, tiny_mnist_like["val"], _cfg(schedule="alternate", block=1, accept_ties=False), progress=False)
    assert alt.history["layer"][:3] == ["1.0", "2.0", "fc"]  # block of 1: every step moves on


def test_steepest_ascent_takes_the_best_of_the_whole_neighbourhood(tiny_mnist_like):
    net = random_sparse_ternary("mnist_net", 95, seed=0)  # layer 1.0: 20 nonzero x 380 zero weights
    res = sense(net, tiny_mnist_like["val"].subset(48), _cfg(schedule="1.0", steps=1, neighbours="all"), record=True,
                progress=False)
    accs = res.neighbourhoods[0][3]
    assert len(accs) == 20 * 380 and res.history["evaluations"] == [7600]
    assert res.history["best_neighbour"][0] == pytest.approx(accs.max().item())


def test_annealing_can_step_down_and_cools(start, tiny_mnist_like):
    cfg = _cfg(schedule="fc", steps=8, temperature=(1.0, 0.5), accept_ties=False)
    res = sense(start, tiny_mnist_like["val"], cfg, progress=False)
    assert all(res.history["moved"])  # at T ~ 1 (accuracy units) every proposal is taken
    assert temperature(cfg, 0) == 1.0 and temperature(cfg, 7) == pytest.approx(0.5)


def test_annealing_steps_down_where_the_climb_would_tie(start, tiny_mnist_like):
    # among 100 sampled swaps one always ties with the current network, so the best neighbour is
    # never worse: only a random proposal lets the annealer go downhill
    val = tiny_mnist_like["val"]
    hot = sense(start, val, _cfg(schedule="fc", steps=100, neighbours=100, block=10**6, accept_ties=False,
                                 temperature=(0.5, 0.1)), progress=False)
    down = [b < a for a, b in zip([hot.member_val[0]] + hot.history["val_acc"], hot.history["val_acc"])]
    assert any(down)
    assert max(hot.member_val) == hot.member_val[hot.best_member]  # the best seen is kept apart
    with pytest.raises(ValueError, match="annealing proposes"):
        sense(start, val, _cfg(neighbours="all", temperature=(0.5, 0.1)), progress=False)


def test_impossible_settings_say_what_is_allowed(start, tiny_mnist_like):
    val = tiny_mnist_like["val"]
    for bad, match in [(dict(schedule="conv9"), "schedule must be"), (dict(neighbours=0), "neighbours must"),
                       (dict(layers=("x",)), "not sparse ternary layers"), (dict(block=0), "block >= 1"),
                       (dict(temperature=(1.0, 0.0)), "temperature"), (dict(fitness="loss"), "fitness must be"),
                       (dict(fitness="cross_entropy", loss_temperature=0.0), "loss_temperature must be"),
                       (dict(swaps_per_step=0), "swaps_per_step must be"),
                       (dict(swaps_per_step=3, neighbours="all"), "composite move"),
                       (dict(swaps_per_step=3, temperature=(0.5, 0.1)), "composite move")]:
        with pytest.raises(ValueError, match=match):
            sense(start, val, _cfg(**bad), progress=False)
    with pytest.raises(ValueError, match=r"\(0, 100\)"):
        random_sparse_ternary("mnist_net", 0)
    with pytest.raises(ValueError, match=r"\[0, 100\)"):
        random_sparse_ternary("mnist_net", 100)


def test_family_ensemble(start, tiny_mnist_like):
    res = sense(start, tiny_mnist_like["val"], _cfg(schedule="fc", steps=8), progress=False)
    top = best_members(res, 3)
    assert top[0] == res.best_member and len(set(top)) == len(top)
    members = [res.member(i) for i in top]
    test = tiny_mnist_like["test"]
    assert ensemble_accuracy(members[:1], test) == accuracy(members[0], test)  # one member: itself
    assert 0 <= ensemble_accuracy(members, test, how="mean") <= 1
    with pytest.raises(ValueError, match="vote"):
        ensemble_accuracy(members, test, how="median")


def test_a_climber_moves_its_network_and_evaluators_together(start, tiny_mnist_like):
    from aann.neighbours import NeighbourEvaluator, sample_neighbours

    val, test = tiny_mnist_like["val"], tiny_mnist_like["test"]
    climber = sense_module.Climber(start, val, report=test)
    assert climber.net is not start
    for layer in ("1.0", "fc"):
        swap = sample_neighbours(climber.net, layer, 1, seed=4)
        scored = climber.evaluator.evaluate(swap)[0].item()
        climber.move(layer, int(swap.src[0]), int(swap.dst[0]))
        assert climber.val_acc == scored == NeighbourEvaluator(climber.net, val).base_accuracy
        assert climber.test_acc == NeighbourEvaluator(climber.net, test).base_accuracy
    assert value_counts(climber.net) == value_counts(start)  # the family is kept


def test_a_named_search_is_found_again_and_reports_where_it_ended(start, tiny_mnist_like, monkeypatch):
    val, test = tiny_mnist_like["val"], tiny_mnist_like["test"]
    first = search("named", start, val, _cfg(), test, progress=False)
    assert first.final() == {"val_acc": first.history["val_acc"][-1], "test_acc": first.history["test_acc"][-1],
                             "evaluations": 6 * 20}
    assert first.final()["test_acc"] == exact_accuracy(first.network, test)  # counted the same way
    real, calls = sense_module.Climber.neighbourhood, []
    monkeypatch.setattr(sense_module.Climber, "neighbourhood", lambda *args: calls.append(1) or real(*args))
    again = search("named", start, val, _cfg(), test, progress=False)
    assert calls == [] and again.path == first.path and again.history == first.history
    other = search("named", start, val, _cfg(seed=2), test, progress=False)  # another configuration: its own file
    assert len(calls) == 6 and other.config.seed == 2
    nothing = sense(start, val, _cfg(steps=0), progress=False).final()
    assert nothing == {"val_acc": exact_accuracy(start, val), "test_acc": None, "evaluations": 0}
