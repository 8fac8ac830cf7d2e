# Rerun: .venv/bin/python results/checks/car_three_class_expert.py > results/checks/car_three_class_expert.log
"""How the expert chooses among the 3 classes, on the tracks its constants were tuned on
(gymnasium seeds 0-11; the book's data and evaluation tracks are other seeds). Each rule drives
every track through the 3 class actions; mean return over tracks 0-5 (where the variants were
compared) and 6-11 (looked at only for the finalists, as a check against tuning to six tracks).

- ``v1``: the book's first mapping (until commit f33e472): the Stanley law's continuous steering
  thresholded at 0.1; a wanted slow-down coasts toward the side that steering points to.
- ``v1, coast toward the bend``: the same, but the coasting side is the sign of the centre
  line's turn 8 points ahead.
- ``aim``: ``aann.car_racing.action_class`` on ``TrackExpert.aim_angle`` (pure pursuit, the aim
  point 15 + 0.3 v ahead) with dead band ``db`` and yaw damping ``tau``; the book uses the row
  with its constants (db 0.05, tau 0.25)."""
import numpy as np

from aann import car_racing as cr


def v1_class(action, dead_band=0.1):
    steer, gas, brake = (float(a) for a in action)
    if abs(steer) > dead_band:
        return 0 if steer < 0 else 2
    if gas == 0.0 and brake > 0.0:
        return 0 if steer <= 0 else 2
    return 1


class Rule(cr.ExpertDriver):
    """The track expert executing the classes of one rule."""

    def __init__(self, rule, dead_band=cr.DEAD_BAND, tau=cr.YAW_DAMPING):
        super().__init__(classes=True)
        self.rule, self.dead_band, self.tau = rule, dead_band, tau

    def label(self, obs=None):
        action, _ = self._decide(obs)
        e = self.expert
        if self.rule == "v1":
            return v1_class(action)
        if self.rule == "v1_bend":
            c = v1_class(action)
            steer, gas, brake = (float(a) for a in action)
            if abs(steer) <= 0.1 and gas == 0.0 and brake > 0.0:
                i = e.state()[0]
                turn = cr._wrap(e.direction[(i + 8) % len(e.direction)] - e.direction[i])
                return 0 if turn > 0 else 2
            return c
        return cr.action_class(e.aim_angle(yaw_damping=self.tau), action, self.dead_band)


RULES = [("v1", {}), ("v1_bend", {}),
         ("aim", {"dead_band": 0.1, "tau": 0.0}), ("aim", {"dead_band": 0.05, "tau": 0.0}),
         ("aim", {"dead_band": 0.05, "tau": 0.1}), ("aim", {"dead_band": 0.05, "tau": 0.2}),
         ("aim", {"dead_band": 0.05, "tau": 0.25}), ("aim", {"dead_band": 0.05, "tau": 0.3}),
         ("aim", {"dead_band": 0.05, "tau": 0.35}), ("aim", {"dead_band": 0.1, "tau": 0.25})]

if __name__ == "__main__":
    print("rule, parameters: mean return tracks 0-5 | 6-11 | laps finished of 12 | mean tiles visited; per track")
    for rule, kw in RULES:
        eps = cr.evaluate_driver(Rule(rule, **kw), list(range(12)), workers=1, progress=False)
        r = np.array([e.total_return for e in eps])
        laps = sum(e.tiles_visited >= 0.95 and e.steps < cr.MAX_STEPS for e in eps)
        print(f"{rule} {kw}: {r[:6].mean():.1f} | {r[6:].mean():.1f} | {laps} | "
              f"{np.mean([e.tiles_visited for e in eps]):.2f}; {', '.join(f'{x:.0f}' for x in r)}", flush=True)
