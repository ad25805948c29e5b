"""Which optimizer steps the training diagnostics sample, and what sampling costs.

Three rules, in this order of precedence:

1. The first `FIRST_STEPS` steps are always sampled: a bad init or learning rate shows there.
2. A run gets at least `MIN_SAMPLES` samples (all its steps when it is shorter): the interval is
   never wider than `widest_interval(total_steps)`. The alarms need several samples in a row, and
   a 10-step run sampled every 50 steps had one sample and empty plots.
3. Between those, samples fall on multiples of an interval that starts at `every` (the shortest
   interval the user asked for) and widens when the cost measured in this run would take more
   than `budget` of the step time on average.

The cost is measured in the run itself: the mean time of a sampled step minus the mean time of a
plain one, in units of a plain step (`cost`). Sampling every `interval` steps then costs about
`cost / interval` of the run's step time, so the interval becomes at least `cost / budget`. The
overhead reported (`overhead()["fraction"]`) is the average over the steps timed so far: the extra
seconds of all sampled steps over the time those steps would have taken as plain steps.

Sampling only reads the model (hooks, norms, copies), so which steps are sampled never changes the
training numbers: a resumed run may sample other steps than an uninterrupted one (timings differ)
and still ends with the same weights.
"""

from __future__ import annotations

import math

FIRST_STEPS = 3
MIN_SAMPLES = 20
BUDGET = 0.05


def widest_interval(total_steps: int | None) -> int | float:
    """The widest interval that still gives `MIN_SAMPLES` samples (the first steps included) in
    a run of `total_steps` optimizer steps; unbounded when the length is unknown."""
    if total_steps is None:
        return math.inf
    later = MIN_SAMPLES - FIRST_STEPS  # multiples of the interval after the first steps
    return max(1, (total_steps - FIRST_STEPS) // later)


class Sampling:
    def __init__(self, every: int, total_steps: int | None = None,
                 budget: float | None = BUDGET):
        self.every = every
        self.widest = widest_interval(total_steps)
        self.budget = budget
        self.interval = max(1, min(every, self.widest)) if every > 0 else 0
        self.last = -1  # the last sampled step
        self.times = {"sampled": [0.0, 0], "plain": [0.0, 0]}

    def want(self, step: int) -> bool:
        """Whether optimizer step `step` (0-based) is sampled; reads no clock."""
        if self.every <= 0 or step <= self.last:
            return False
        return step < FIRST_STEPS or step % self.interval == 0

    def taken(self, step: int) -> None:
        self.last = step

    def time_step(self, sampled: bool, seconds: float) -> None:
        """One timed optimizer step; the interval follows the cost measured so far."""
        bucket = self.times["sampled" if sampled else "plain"]
        bucket[0] += seconds
        bucket[1] += 1
        self._adapt()

    def cost(self) -> float | None:
        """Extra time of a sampled step, in plain steps; None until both kinds were timed."""
        (sampled, n_sampled), (plain, n_plain) = self.times["sampled"], self.times["plain"]
        if not n_sampled or not n_plain or plain <= 0:
            return None
        per_plain = plain / n_plain
        return max(sampled / n_sampled - per_plain, 0.0) / per_plain

    def _adapt(self) -> None:
        cost = self.cost()
        if self.every <= 0 or self.budget is None or cost is None:
            return
        needed = math.ceil(cost / self.budget - 1e-9)  # 2.0000001 / 0.05 is 40, not 41
        self.interval = max(1, min(self.widest, max(self.every, needed)))

    def thin(self) -> None:
        """Half as many samples from now on (memory bound: older samples were thinned)."""
        self.every *= 2
        self.widest = max(self.widest, self.every)
        self.interval = max(self.interval, min(self.every, self.widest))
        self._adapt()

    def overhead(self) -> dict:
        (sampled, n_sampled), (plain, n_plain) = self.times["sampled"], self.times["plain"]
        cost = self.cost()
        if cost is None:
            return {"sampled_steps": n_sampled, "plain_steps": n_plain, "fraction": None,
                    "every": self.interval, "budget": self.budget}
        per_plain = plain / n_plain
        extra = cost * per_plain * n_sampled
        return {"sampled_steps": n_sampled, "plain_steps": n_plain,
                "seconds_per_plain_step": per_plain,
                "seconds_per_sampled_step": sampled / n_sampled,
                "cost_in_plain_steps": cost, "every": self.interval, "budget": self.budget,
                "fraction": extra / ((n_sampled + n_plain) * per_plain)}

    def state_dict(self) -> dict:
        return {"every": self.every, "widest": self.widest, "budget": self.budget,
                "interval": self.interval, "last": self.last,
                "times": {k: list(v) for k, v in self.times.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.every, self.widest, self.budget = state["every"], state["widest"], state["budget"]
        self.interval, self.last = state["interval"], state["last"]
        self.times = {k: list(v) for k, v in state["times"].items()}
