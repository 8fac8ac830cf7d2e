import numpy as np
import pytest
import torch

from aann import car_racing as cr
from aann import demonstrations as demo
from aann.data import CorruptDataError
from aann.models import get_model


@pytest.mark.parametrize("aim, action, expected", [
    (0.3, [0.5, 1.0, 0.0], 0),  # the aim point lies left beyond the dead band: left, whatever it steers
    (-0.3, [-0.5, 1.0, 0.0], 2),
    (0.02, [0.4, 1.0, 0.0], 1),  # nearly straight ahead: gas
    (0.02, [0.0, 0.0, 0.4], 0),  # wants to slow down: coast, toward the aim's side
    (-0.02, [0.0, 0.0, 0.4], 2),
    (0.3, [0.0, 0.0, 0.4], 0),  # slowing down in a bend: still the bend's side
])
def test_action_class(aim, action, expected):
    assert cr.action_class(aim, np.array(action)) == expected


@pytest.fixture
def placed_expert():
    """The expert on track 3, and place(offset): the car moved ``offset`` units left of the centre
    line (negative: right of it), heading along the track; returns its hull."""
    env = cr.make_env()
    env.reset(seed=3)
    expert = cr.TrackExpert(env)
    hull = env.unwrapped.car.hull
    t = expert.direction[expert.state()[0]]
    start, normal_left = np.array(hull.position), np.array([-np.sin(t), np.cos(t)])

    def place(offset):
        hull.position = tuple(start + offset * normal_left)
        hull.angle = t - np.pi / 2
        return hull

    yield expert, place
    env.close()


def test_aim_angle_points_at_the_line_ahead_and_is_damped_by_the_yaw_rate(placed_expert):
    """Placed right of the line and heading along it, the aim point lies to the left (> 0); a car
    already turning left fast (yaw rate > 0) has its aim damped by yaw_damping times the rate."""
    expert, place = placed_expert
    hull = place(-3.0)
    still = expert.aim_angle()
    assert still > 0
    hull.angularVelocity = 2.0
    assert expert.aim_angle() == pytest.approx(still - cr.YAW_DAMPING * 2.0, abs=1e-9)
    assert expert.aim_angle(yaw_damping=0.0) == pytest.approx(still, abs=1e-9)


def test_class_actions_match_their_names():
    assert cr.CLASSES == ("left", "gas", "right")
    assert cr.CLASS_ACTIONS[0, 0] < 0 < cr.CLASS_ACTIONS[2, 0]  # gymnasium: steer < 0 is left
    assert cr.CLASS_ACTIONS[1, 1] > 0 and (cr.CLASS_ACTIONS[[0, 2], 1] == 0).all()


def test_to_gray():
    obs = np.zeros((96, 96, 3), np.uint8)
    obs[0, 0] = (255, 255, 255)
    g = cr.to_gray(obs)
    assert g.shape == (96, 96) and g.dtype == np.uint8 and g[0, 0] == 255 and g[1, 1] == 0


def test_expert_needs_a_track():
    env = cr.make_env()
    try:
        with pytest.raises(RuntimeError, match="reset"):
            cr.TrackExpert(env)
    finally:
        env.close()


def test_expert_turns_toward_the_centre_line(placed_expert):
    """Left of the line (negative cross-track error) the expert steers right, and vice versa."""
    expert, place = placed_expert
    for side, sign in [(+1, 1), (-1, -1)]:  # moved to the left of the line: steer right (> 0)
        place(side * 3.0)
        assert sign * expert.act()[0] > 0


def test_episode_is_deterministic_and_checks_arguments():
    a = cr.run_episode(cr.ExpertDriver(classes=True), seed=5, max_steps=60, record=True)
    b = cr.run_episode(cr.ExpertDriver(classes=True), seed=5, max_steps=60, record=True)
    assert a.total_return == b.total_return and a.steps == 60
    assert a.frames.shape == (60, 96, 96, 3) and np.array_equal(a.frames, b.frames)
    assert a.labels.shape == (60,) and set(np.unique(a.labels)) <= {0, 1, 2}
    with pytest.raises(ValueError, match="noise"):
        cr.run_episode(cr.RandomDriver(), seed=0, max_steps=10, noise=1.5)
    with pytest.raises(ValueError, match="max_steps"):
        cr.run_episode(cr.RandomDriver(), seed=0, max_steps=0)


def test_net_driver_and_workers_give_the_same_episodes():
    torch.manual_seed(0)
    net = get_model("car_net")
    driver = cr.NetDriver(net)
    assert any(np.array_equal(driver.act(np.zeros((96, 96, 3), np.uint8)), a) for a in cr.CLASS_ACTIONS)
    one = cr.evaluate_driver(driver, [1, 2], max_steps=40, workers=1, progress=False)
    two = cr.evaluate_driver(driver, [1, 2], max_steps=40, workers=2, progress=False)
    assert [e.total_return for e in one] == [e.total_return for e in two]
    # a second call drives in the same worker processes (their start is the cost the pool saves)
    from aann.runtime import _POOL

    pool = _POOL["pool"]
    again = cr.evaluate_driver(driver, [2, 1], max_steps=40, workers=2, progress=False)
    assert [e.total_return for e in again] == [e.total_return for e in two[::-1]]
    assert _POOL["pool"] is pool


def test_a_failed_call_terminates_its_worker_pool_and_the_next_starts_fresh():
    from aann.runtime import worker_pool

    with pytest.raises(ValueError, match="at least 2 workers"):
        with worker_pool(1):
            pass
    with worker_pool(2) as pool:
        first = pool
    with worker_pool(2) as pool:
        assert pool is first  # kept between calls
    with pytest.raises(ZeroDivisionError):
        with worker_pool(2) as pool:
            1 / 0  # the call fails while its pool is in use
    with pytest.raises(ValueError, match="not running"):
        first.map(abs, [-1])  # terminated: no job of the failed call runs on
    with worker_pool(2) as pool:
        assert pool is not first and pool.map(abs, [-1, -2]) == [1, 2]
    with worker_pool(3) as bigger:  # more workers than the kept pool has: replaced
        assert bigger is not pool and bigger.map(abs, [-3]) == [3]
    with pytest.raises(ValueError, match="not running"):
        pool.map(abs, [-1])
    with worker_pool(2) as pool:  # fewer: the kept pool serves
        assert pool is bigger


def test_episode_gif():
    frames = np.random.default_rng(0).integers(0, 255, (6, 96, 96, 3), dtype=np.uint8)
    gif = cr.episode_gif(frames, scale=2, every=2)
    assert gif[:6] == b"GIF89a"
    with pytest.raises(ValueError, match="RGB"):
        cr.episode_gif(frames[..., 0])


def test_split_seeds_are_disjoint_and_checked():
    sets = [set(demo.split_seeds(k, 500)) for k in demo.SPLIT_SEED_BASE]
    assert sum(len(s) for s in sets) == len(set().union(*sets))
    with pytest.raises(ValueError, match="unknown split"):
        demo.split_seeds("training", 3)
    with pytest.raises(ValueError, match="steps"):
        demo.DemoConfig(steps=0)


def test_demonstrations_resume_and_refuse_corruption(tmp_path, monkeypatch):
    monkeypatch.setenv("AANN_DATA", str(tmp_path))
    config = demo.DemoConfig(steps=25, noise=0.2)
    folder = demo.generate([10, 11], config, workers=1, progress=False)
    split, info = demo.load_tracks([10, 11], config)
    assert split.x.shape == (50, 1, 96, 96) and 0 <= split.x.min() and split.x.max() <= 1
    assert set(info) == {10, 11} and split.y.dtype == torch.int64
    # resume: a finished track is kept as it is, a missing one is made again identically
    kept = (folder / "track_10.npz").stat().st_mtime_ns
    before = (folder / "track_11.npz").read_bytes()
    (folder / "track_11.npz").unlink()
    demo.generate([10, 11], config, workers=1, progress=False)
    assert (folder / "track_10.npz").stat().st_mtime_ns == kept
    again, _ = demo.load_tracks([10, 11], config)
    assert torch.equal(again.x, split.x) and torch.equal(again.y, split.y)
    assert len(before) > 0
    # a corrupted file is refused with its path
    path = folder / "track_10.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptDataError, match="track_10.npz"):
        demo.load_tracks([10], config)
    with pytest.raises(FileNotFoundError, match="track_12.npz"):
        demo.load_tracks([12], config)


def test_p_siren_workers_load_the_demonstrations_themselves(tmp_path, monkeypatch):
    # the car chapter's full profile trains its seeds side by side: each worker reads the generated
    # files, and the notebook's p_siren then finds every level in the cache
    from aann import psiren
    from aann.psiren import PSirenConfig, p_siren, p_siren_parallel

    monkeypatch.setenv("AANN_DATA", str(tmp_path))
    config = demo.DemoConfig(steps=25, noise=0.2)
    n_tracks = {"train": 2, "val": 1, "test": 1}
    data, _ = demo.load_demonstrations(n_tracks, config, workers=1, progress=False)
    source = demo.DemonstrationSplits(n_tracks, config)
    assert all(torch.equal(source()[k].x, data[k].x) for k in n_tracks)
    cfg = PSirenConfig(model="car_net", n1=1, n2=2, n3=0, n4=1, batch_size=32)
    jobs = [dict(dataset=source, seed=s, levels=[50, 90], config=cfg) for s in (0, 1)]
    p_siren_parallel(jobs, workers=2, device="cpu")

    def no_training(*args, **kwargs):
        raise AssertionError("p_siren trained although the parallel jobs had cached every level")

    monkeypatch.setattr(psiren, "train_epoch", no_training)
    monkeypatch.setattr(psiren, "fine_tune", no_training)
    for s in (0, 1):
        assert set(p_siren(data, [50, 90], seed=s, config=cfg)) == {50.0, 90.0}

    with pytest.raises(ValueError, match="train_size subsets a named data set"):
        p_siren_parallel([dict(jobs[0], train_size=10)], workers=2)
    with pytest.raises(ValueError, match="a data set name or a callable"):
        p_siren_parallel([dict(jobs[0], dataset=3)], workers=2)
    with pytest.raises(ValueError, match="cannot be sent to a worker process"):
        p_siren_parallel([dict(jobs[0], dataset=lambda device: data)] * 2, workers=2)
    with pytest.raises(FileNotFoundError, match="track_10002.npz"):
        demo.DemonstrationSplits({"train": 3}, config)()


def test_driving_table_counts_laps_and_returns():
    def ep(ret, steps, tiles):
        return cr.Episode(seed=0, total_return=ret, steps=steps, tiles_visited=tiles)

    lap, cut, short = ep(900.0, 1000 - 1, 1.0), ep(500.0, cr.MAX_STEPS, 1.0), ep(100.0, 300, 0.5)
    assert lap.lap_finished and not cut.lap_finished and not short.lap_finished  # cut at the time limit: no lap
    table = cr.driving_table({"a": [lap, cut, short], "b": [lap]})
    assert table.loc["a", "mean return"] == pytest.approx(500.0) == cr.mean_return([lap, cut, short])
    assert table.loc["a", "sd"] == pytest.approx(400.0)  # sample sd of 900, 500, 100
    assert table.loc["a", "laps finished"] == 1 and table.loc["a", "tracks"] == 3
    assert table.loc["a", "tiles visited (mean)"] == pytest.approx(2.5 / 3)
    assert table.loc["b", "sd"] == 0.0 and table.loc["b", "laps finished"] == 1
