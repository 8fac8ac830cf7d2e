"""Gymnasium's CarRacing, headless: a scripted expert that drives from the track's centre line, the
three action classes of the paper's 3-output car net, drivers, and closed-loop episodes.

Conventions (gymnasium ``CarRacing-v3``, continuous actions ``[steer, gas, brake]``): ``steer < 0``
turns the car left (counter-clockwise in the world frame, which is also left on screen); the
hull's heading is ``hull.angle + pi/2``; the track is ``env.unwrapped.track``, a closed list of
``(alpha, beta, x, y)`` centre-line points about 3.5 units apart; the road is 2 x 6.67 units wide.
A lap's return is ``1000 - 0.1 * frames`` when every tile is visited; an episode is cut at 1,000
frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CLASSES", "STEER", "CLASS_ACTIONS", "AIM_DISTANCE", "AIM_PER_SPEED", "YAW_DAMPING", "DEAD_BAND",
           "ENV_ID", "MAX_STEPS", "ROAD_HALF_WIDTH", "make_env", "to_gray", "TrackExpert", "action_class",
           "ExpertDriver", "RandomDriver", "NetDriver", "Episode", "mean_return", "driving_table", "run_episode",
           "evaluate_driver", "episode_gif"]

# The three classes of the 3-output car net, and the action a driver executes for each. They are
# gymnasium's discrete CarRacing actions "steer left", "gas", "steer right" (its other two,
# "nothing" and "brake", have no output in the paper's net). Turning classes coast: without the
# gas the car slows by about 20 units/s^2, which is the only speed control a 3-class driver has.
CLASSES = ("left", "gas", "right")
STEER = 0.6  # steering of the two turning classes (gymnasium's discrete actions use 0.6 as well)
CLASS_ACTIONS = np.array([[-STEER, 0.0, 0.0], [0.0, 1.0, 0.0], [STEER, 0.0, 0.0]], dtype=np.float32)

# How the expert chooses a class (see ``action_class``): it aims at the centre-line point
# AIM_DISTANCE + AIM_PER_SPEED * speed ahead, damps the aim by YAW_DAMPING times the yaw rate, and
# turns when the damped aim angle is beyond DEAD_BAND. Tuned on tracks 0-11 like the expert's
# constants (experiments/car_expert_rules.py compares the rules).
AIM_DISTANCE = 15.0  # units along the centre line (the road is 13.3 wide, a frame shows ~45 ahead)
AIM_PER_SPEED = 0.3  # s: the aim point moves out with speed
YAW_DAMPING = 0.25  # s
DEAD_BAND = 0.05  # rad: |damped aim angle| below this counts as "straight"

ENV_ID = "CarRacing-v3"
MAX_STEPS = 1000  # gymnasium's time limit for CarRacing
ROAD_HALF_WIDTH = 40 / 6.0


def make_env(**kwargs):
    """A headless continuous-action CarRacing environment (gymnasium's time limit kept)."""
    import gymnasium as gym

    return gym.make(ENV_ID, continuous=True, **kwargs)


def _wrap(angle):
    return (angle + np.pi) % (2 * np.pi) - np.pi


def to_gray(obs: np.ndarray) -> np.ndarray:
    """96 x 96 x 3 RGB observation -> 96 x 96 uint8 luminance (ITU-R 601), the car net's input."""
    return (obs.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().astype(np.uint8)


class TrackExpert:
    """A scripted driver that reads the track and the car's state (no pixels, no learning).

    Steering is a Stanley-type law on the centre line, ``heading_error + atan(k * cross_track / (v + 5))``.
    Speed follows a profile planned once per track: the lateral-grip limit ``v <= sqrt(a_lat / kappa)``
    from the centre line's curvature ``kappa`` (smoothed over ``window`` segments), capped at
    ``v_max``, then a backward pass so the car can brake in time (``v_i^2 <= v_{i+1}^2 + 2 a_brake ds``).
    Gas is cut while steering hard and off the road, where rear-wheel spin would spin the car out.
    The constants were tuned by hand on tracks 0-11 (never the book's data or evaluation tracks).

    ``act(obs)`` returns the continuous action ``[steer, gas, brake]``; ``obs`` is ignored.
    """

    def __init__(self, env, a_lat: float = 130.0, a_brake: float = 100.0, v_max: float = 160.0,
                 k_cross: float = 0.6, k_heading: float = 1.0, window: int = 3, gas_per_steer: float = 1.5,
                 gas_off_road: float = 0.2):
        self.unwrapped = env.unwrapped
        track = getattr(self.unwrapped, "track", None)
        if not track:
            raise RuntimeError("the environment has no track yet: call env.reset() before building the expert")
        self.xy = np.array([(x, y) for _, _, x, y in track])
        n = len(self.xy)
        d = np.roll(self.xy, -1, axis=0) - self.xy
        self.seg = np.hypot(d[:, 0], d[:, 1])
        self.direction = np.arctan2(d[:, 1], d[:, 0])
        turn = _wrap(np.roll(self.direction, -1) - self.direction)
        kappa = np.abs(sum(np.roll(turn, s) for s in range(-window, window + 1))) / ((2 * window + 1) * self.seg.mean())
        v = np.minimum(v_max, np.sqrt(a_lat / np.maximum(kappa, 1e-9)))
        for _ in range(2):  # the loop is closed: two backward passes settle the wrap-around
            for i in range(n - 1, -1, -1):
                v[i] = min(v[i], math.sqrt(v[(i + 1) % n] ** 2 + 2 * a_brake * self.seg[i]))
        self.speed_profile = v
        self.k_cross, self.k_heading = k_cross, k_heading
        self.gas_per_steer, self.gas_off_road = gas_per_steer, gas_off_road

    def state(self):
        """(index of the nearest centre-line point, signed cross-track error (+ = right of the line),
        heading error (+ = the line turns left of the car), speed)."""
        hull = self.unwrapped.car.hull
        pos = np.array(hull.position)
        speed = float(np.hypot(*hull.linearVelocity))
        i = int(np.argmin(((self.xy - pos) ** 2).sum(axis=1)))
        rel = pos - self.xy[i]
        t = self.direction[i]
        cross = rel[0] * math.sin(t) - rel[1] * math.cos(t)
        heading_error = float(_wrap(t - (hull.angle + math.pi / 2)))
        return i, cross, heading_error, speed

    def aim_angle(self, distance: float = AIM_DISTANCE, per_speed: float = AIM_PER_SPEED,
                  yaw_damping: float = YAW_DAMPING) -> float:
        """Pure pursuit with damping: the angle (rad, + = left) from the car's heading to the
        centre-line point ``distance + per_speed * speed`` ahead of the nearest one, less
        ``yaw_damping`` times the yaw rate (rad/s, + = turning left). The damping stops a driver
        whose steering is all or nothing from overshooting the line: it lets go of a turn that
        is already turning the car fast enough."""
        i, _, _, speed = self.state()
        n, ahead, k = len(self.xy), distance + per_speed * speed, i
        while ahead > 0:
            ahead -= self.seg[k % n]
            k += 1
        hull = self.unwrapped.car.hull
        d = self.xy[k % n] - np.array(hull.position)
        angle = _wrap(math.atan2(d[1], d[0]) - (hull.angle + math.pi / 2))
        return float(angle) - yaw_damping * float(hull.angularVelocity)

    def act(self, obs=None) -> np.ndarray:
        i, cross, heading_error, speed = self.state()
        steer_left = self.k_heading * heading_error + math.atan2(self.k_cross * cross, speed + 5.0)
        steer = float(np.clip(-steer_left, -1.0, 1.0))
        target = self.speed_profile[i]
        cap = max(0.1, 1.0 - self.gas_per_steer * abs(steer))
        if abs(cross) > ROAD_HALF_WIDTH:
            cap = min(cap, self.gas_off_road)
        gas = float(np.clip(0.1 * (target - speed), 0.0, cap))
        brake = float(np.clip(0.05 * (speed - target), 0.0, 0.8))
        return np.array([steer, gas, brake], dtype=np.float32)


def action_class(aim: float, action: np.ndarray, dead_band: float = DEAD_BAND) -> int:
    """The expert's class from its damped aim angle ``aim`` (``TrackExpert.aim_angle``) and its
    continuous action ``[steer, gas, brake]``: turn left / right when the aim is beyond the dead
    band; otherwise coast toward the aim's side when the expert wants to slow down (no gas, some
    brake: coasting is the only way to slow down), and "gas" when it does not.

    Why not threshold the expert's continuous steering instead (version 1 of the demonstrations)?
    Its Stanley law is tuned for steering that can be small; executed as all-or-nothing turns it
    oscillates: the car weaved, spent a third of its frames off the road and reached 517 on the
    evaluation tracks. Choosing the coasting side by the sign of a near-zero steering also swerved
    the car away from the bend it was braking for."""
    _, gas, brake = (float(a) for a in action)
    if aim > dead_band:
        return 0
    if aim < -dead_band:
        return 2
    if gas == 0.0 and brake > 0.0:
        return 0 if aim > 0 else 2
    return 1


# --------------------------------------------------------------------------------------------
# Drivers: reset(env) at the start of an episode, act(obs) -> continuous action.


class ExpertDriver:
    """The track expert, executing its continuous actions (``classes=False``) or the class actions
    of its own decisions (``classes=True``: the demonstrator, and the ceiling of any 3-class net)."""

    def __init__(self, classes: bool = True, **expert_kwargs):
        self.classes, self.expert_kwargs = classes, expert_kwargs

    def reset(self, env):
        self.expert = TrackExpert(env, **self.expert_kwargs)
        self._frame, self._action, self._class = None, None, None

    def _decide(self, obs) -> np.ndarray:
        # label() and act() are both called on each recorded frame: decide once per observation
        if obs is None or obs is not self._frame:
            self._frame, self._action, self._class = obs, self.expert.act(obs), None
        return self._action

    def label(self, obs=None) -> int:
        action = self._decide(obs)
        if self._class is None:  # only when asked: the continuous expert never is
            self._class = action_class(self.expert.aim_angle(), action)
        return self._class

    def act(self, obs) -> np.ndarray:
        if self.classes:
            return CLASS_ACTIONS[self.label(obs)]
        return self._decide(obs)


class RandomDriver:
    """Uniformly random class actions: the floor."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def reset(self, env):
        pass

    def act(self, obs) -> np.ndarray:
        return CLASS_ACTIONS[self.rng.integers(len(CLASSES))]


class NetDriver:
    """A 3-output net driving: grayscale frame in, the class action of its top output out."""

    def __init__(self, model, device="cpu"):
        self.model, self.device = model.to(device).eval(), device

    def reset(self, env):
        pass

    def act(self, obs) -> np.ndarray:
        import torch

        x = torch.from_numpy(to_gray(obs)).to(self.device, torch.float32).div_(255.0)[None, None]
        with torch.no_grad():
            c = int(self.model(x).argmax(1))
        return CLASS_ACTIONS[c]


@dataclass
class Episode:
    seed: int
    total_return: float
    steps: int
    tiles_visited: float  # fraction of the track's tiles
    frames: np.ndarray | None = None  # T x 96 x 96 x 3 uint8 observations, when recorded
    labels: np.ndarray | None = None  # T expert classes, when the driver gives them
    noisy: np.ndarray | None = None  # T booleans: the step executed a random class (``noise``)
    extra: dict = field(default_factory=dict)

    @property
    def lap_finished(self) -> bool:
        """At least 95 % of the tiles visited (gymnasium's lap criterion) before the time limit."""
        return self.tiles_visited >= 0.95 and self.steps < MAX_STEPS


def mean_return(episodes: list[Episode]) -> float:
    """The mean return of a driver's episodes."""
    return float(np.mean([e.total_return for e in episodes]))


def driving_table(episodes: dict[str, list[Episode]]):
    """One row per driver (``episodes`` maps a driver's name to its episodes): mean return and its
    sample standard deviation, laps finished, mean fraction of tiles visited, tracks driven."""
    import pandas as pd

    rows = []
    for name, eps in episodes.items():
        r = np.array([e.total_return for e in eps])
        rows.append({"driver": name, "mean return": r.mean(), "sd": r.std(ddof=1) if len(r) > 1 else 0.0,
                     "laps finished": sum(e.lap_finished for e in eps),
                     "tiles visited (mean)": np.mean([e.tiles_visited for e in eps]), "tracks": len(eps)})
    return pd.DataFrame(rows).set_index("driver")


def run_episode(driver, seed: int, max_steps: int = MAX_STEPS, record: bool = False, noise: float = 0.0,
                noise_seed: int = 0) -> Episode:
    """One episode on track ``seed``. ``record`` keeps every observation (and the driver's labels
    when it has ``label``). ``noise`` > 0 makes a demonstration in the style of DART: with that
    probability a step executes a random class instead of the driver's action, while the label
    stays the driver's, so the data shows how to recover from small mistakes."""
    if not 0 <= noise < 1:
        raise ValueError(f"noise must be in [0, 1), got {noise}")
    if not 1 <= max_steps <= MAX_STEPS:
        raise ValueError(f"max_steps must be in [1, {MAX_STEPS}], got {max_steps}")
    env = make_env()
    rng = np.random.default_rng(noise_seed)
    try:
        obs, _ = env.reset(seed=int(seed))
        driver.reset(env)
        frames, labels, noisy, total = [], [], [], 0.0
        labelled = record and hasattr(driver, "label")
        for t in range(max_steps):
            if record:
                frames.append(obs)
            if labelled:
                labels.append(driver.label(obs))
            action = driver.act(obs)
            if noise:
                noisy.append(rng.random() < noise)
                if noisy[-1]:
                    action = CLASS_ACTIONS[rng.integers(len(CLASSES))]
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        u = env.unwrapped
        visited = u.tile_visited_count / len(u.track)
    finally:
        env.close()
    return Episode(int(seed), total, t + 1, visited,
                   np.stack(frames) if record else None,
                   np.array(labels, np.int8) if labels else None,
                   np.array(noisy, bool) if noise else None)


def _episode(args) -> Episode:
    driver, seed, max_steps, record = args
    return run_episode(driver, seed, max_steps, record=record)


def evaluate_driver(driver, seeds, max_steps: int = MAX_STEPS, workers: int = 1, record: bool = False,
                    progress: bool = True, desc: str = "episodes") -> list[Episode]:
    """Closed-loop episodes of ``driver`` on every track in ``seeds``, in ``workers`` processes
    (the driver is copied into each; a net driver's model must be on the CPU then). ``driver`` may
    also be a list, one driver per track. Episodes are independent and seeded, so the result does
    not depend on ``workers``."""
    from tqdm import tqdm

    seeds = [int(s) for s in seeds]
    drivers = list(driver) if isinstance(driver, (list, tuple)) else [driver] * len(seeds)
    if len(drivers) != len(seeds):
        raise ValueError(f"one driver per track: got {len(drivers)} drivers for {len(seeds)} tracks")
    jobs = [(d, s, max_steps, record) for d, s in zip(drivers, seeds)]
    bar = tqdm(total=len(seeds), desc=desc, unit="episode", disable=not progress, mininterval=5)
    if workers <= 1 or len(seeds) <= 1:
        out = []
        for job in jobs:
            out.append(_episode(job))
            bar.update(1)
    else:
        from .runtime import worker_pool

        with worker_pool(min(workers, len(seeds))) as pool:
            out = []
            for ep in pool.imap(_episode, jobs):
                out.append(ep)
                bar.update(1)
    bar.close()
    return out


def episode_gif(frames: np.ndarray, scale: int = 3, every: int = 2) -> bytes:
    """An animated GIF (bytes) of observation frames (T x 96 x 96 x 3): every ``every``-th frame,
    enlarged ``scale`` times (nearest neighbour), played at the environment's 50 frames/s."""
    import io

    from PIL import Image

    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be T x H x W x 3 RGB, got shape {frames.shape}")
    if scale < 1 or every < 1:
        raise ValueError(f"scale and every must be >= 1, got {scale} and {every}")
    images = [Image.fromarray(np.kron(f, np.ones((scale, scale, 1), np.uint8))) for f in frames[::every]]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=20 * every, loop=0)
    return buf.getvalue()
