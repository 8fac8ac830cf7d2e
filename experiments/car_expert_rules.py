"""How the car expert chooses among the three classes: rules compared on the tracks its constants
were tuned on (gymnasium seeds 0-11; the book's demonstrations and evaluation tracks are other
seeds). Each rule drives every track through the three class actions; the mean return over tracks
0-5 (where the rules were compared) and 6-11 (looked at only for the finalists, against tuning to
six tracks).

- ``threshold``: the continuous expert's steering thresholded at 0.1; a wanted slow-down coasts
  toward the side that steering points to.
- ``aim``: ``aann.car_racing.action_class`` on ``TrackExpert.aim_angle`` (pure pursuit, the aim
  point 15 + 0.3 v ahead) with dead band ``db`` and yaw damping ``tau``; the book's expert is the
  row with its constants (``DEAD_BAND``, ``YAW_DAMPING``).

About 15 minutes on one core.

    python experiments/car_expert_rules.py
"""

from __future__ import annotations

import numpy as np

from aann import car_racing as cr
from aann.experiments import parser, write_experiment


def threshold_class(action, dead_band: float = 0.1) -> int:
    steer, gas, brake = (float(a) for a in action)
    if abs(steer) > dead_band:
        return 0 if steer < 0 else 2
    if gas == 0.0 and brake > 0.0:
        return 0 if steer <= 0 else 2
    return 1


class Rule(cr.ExpertDriver):
    """The track expert executing the classes of one rule."""

    def __init__(self, rule: str, dead_band: float = cr.DEAD_BAND, tau: float = cr.YAW_DAMPING):
        super().__init__(classes=True)
        self.rule, self.dead_band, self.tau = rule, dead_band, tau

    def label(self, obs=None):
        action = self._decide(obs)
        if self.rule == "threshold":
            return threshold_class(action)
        return cr.action_class(self.expert.aim_angle(yaw_damping=self.tau), action, self.dead_band)


RULES = {"threshold": ("threshold", {}),
         **{f"aim db {db} tau {tau}": ("aim", {"dead_band": db, "tau": tau})
            for db, tau in [(0.1, 0.0), (0.05, 0.0), (0.05, 0.1), (0.05, 0.2), (0.05, 0.25), (0.05, 0.3), (0.05, 0.35),
                            (0.1, 0.25)]}}


def main(argv=None) -> None:
    p = parser(__doc__)
    args = p.parse_args(argv)
    tracks, steps = (list(range(2)), 60) if args.quick else (list(range(12)), cr.MAX_STEPS)
    rules = dict(list(RULES.items())[:2]) if args.quick else RULES
    metrics = {"tracks": len(tracks), "dead_band": cr.DEAD_BAND, "yaw_damping": cr.YAW_DAMPING}
    half = len(tracks) // 2
    for name, (rule, kw) in rules.items():
        eps = cr.evaluate_driver(Rule(rule, **kw), tracks, max_steps=steps, workers=1, progress=False)
        r = np.array([e.total_return for e in eps])
        metrics |= {f"{name}/return_tuning": r[:half].mean(), f"{name}/return_check": r[half:].mean(),
                    f"{name}/laps": sum(e.lap_finished for e in eps),
                    **{f"{name}/track{t}": x for t, x in zip(tracks, r)}}
        print(f"{name}: {r[:half].mean():.1f} | {r[half:].mean():.1f}", flush=True)
    print(f"wrote {write_experiment('car_expert_rules', metrics, args, 'cpu').name}")


if __name__ == "__main__":
    main()
