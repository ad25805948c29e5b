"""How often the doctor's paired-seed answer says "change", by simulation, with its own code.

The doctor looks at the trials on --seeds paired seeds and, while a proposal is ahead with an
interval across zero, adds seeds and looks again (cnnlab.doctor.rounds). This runs that very
procedure (run_rounds and decide, with the training replaced by draws) on made-up val_acc pairs:

- null cases, where the proposal is no better: the rate of "change" must stay at or below
  2.5%, which is what one 95% interval gives (a change needs its lower end above zero);
- cases with a real gain: how often it is found, and on how many seeds on average;
- the reported interval's coverage of the true gain at the look where the doctor stopped.

Each case is run four ways: one look at 3 seeds (95%); the doctor's looks when the budget holds
6 seeds (3 and 6, at 1 - 0.05/2 each) and when it holds 24, the default most (3, 6, 12, 24, at
1 - 0.05/4 each); and those four looks at 95% each (what looking again without paying for it
does). Usage: python examples/doctor_seeds_calibration.py [--trials 4000] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np

from cnnlab.doctor.answer import Proposal
from cnnlab.doctor.rounds import Looks, plan_looks, run_rounds

ORIGINAL = Proposal("original", {}, "")
CANDIDATE = Proposal("candidate", {"optim.lr": "0.05"}, "")


def steady(rng, n, mean, spread):
    return rng.normal(mean, spread, n).clip(0, 1)


def collapsing(rng, n, rate):
    """Trains to ~0.98 on most seeds and collapses to ~0.10 on a share `rate` of them (digits at
    LR 0.5 collapsed on about 4 seeds in 10)."""
    collapsed = rng.random(n) < rate
    return np.where(collapsed, rng.normal(0.10, 0.01, n), rng.normal(0.98, 0.005, n)).clip(0, 1)


# name -> (draw(rng, n) -> (original, candidate) values on n seeds, the true mean gain)
CASES = {
    "null: normal, spread 0.03 (a CIFAR-10-like seed noise)":
        (lambda rng, n: (steady(rng, n, 0.35, 0.02), steady(rng, n, 0.35, 0.02)), 0.0),
    "null: both collapse on 40% of seeds":
        (lambda rng, n: (collapsing(rng, n, 0.4), collapsing(rng, n, 0.4)), 0.0),
    "null: both collapse on 10% of seeds":
        (lambda rng, n: (collapsing(rng, n, 0.1), collapsing(rng, n, 0.1)), 0.0),
    "gain 0.048, spread of a difference 0.029 (the CIFAR-10 case's)":
        (lambda rng, n: (steady(rng, n, 0.34, 0.0205), steady(rng, n, 0.388, 0.0205)), 0.048),
    "the original collapses on 40% of seeds, the proposal never (case (c))":
        (lambda rng, n: (collapsing(rng, n, 0.4), collapsing(rng, n, 0.0)), 0.4 * 0.88),
    "gain 0.585, spread 0.13 (case (a))":
        (lambda rng, n: (steady(rng, n, 0.10, 0.01), steady(rng, n, 0.685, 0.13)), 0.585),
}

PROCEDURES = {
    "one look at 3 seeds, 95%": Looks((3,)),
    "the doctor, budget for 6 seeds: looks at 3, 6, 97.5% each": plan_looks(3, 6),
    "the doctor, budget for 24 seeds: looks at 3, 6, 12, 24, 98.75% each": plan_looks(3, 24),
    "looks at 3, 6, 12, 24, 95% each (unpaid looks)": None,
}


class Unlimited:
    def left(self) -> float:
        return 1e12  # more than any round needs

    def used(self) -> float:
        return 0.0


class NaiveLooks(Looks):
    """The doctor's looks, each at 95%: the error the extra looks would add if unpaid."""

    @property
    def confidence(self) -> float:
        return 0.95


def simulate(draw, gain: float, looks: Looks, trials: int, rng) -> dict:
    changes, seeds_used, covered = 0, 0, 0
    most = max(looks.counts)
    for _ in range(trials):
        original, candidate = draw(rng, most)
        table = {"original": dict(enumerate(original)), "candidate": dict(enumerate(candidate))}
        done: dict[str, dict[int, float]] = {}

        def train(active, seeds):
            for proposal in active:
                for seed in seeds:
                    done.setdefault(proposal.label, {})[seed] = float(table[proposal.label][seed])
            return True

        answer = run_rounds([ORIGINAL, CANDIDATE], list(range(most)), looks, train,
                            lambda: (done, {}), Unlimited(), 1.0, lambda _: None)
        changes += answer["decision"] == "change"
        seeds_used += answer["looks"][-1]
        low, high = answer["comparisons"][0]["ci"]
        covered += low is not None and low <= gain <= high
    return {"change": changes / trials, "seeds": seeds_used / trials, "covered": covered / trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4000, help="simulated doctors per cell")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print("| case | procedure | says change | mean seeds | interval covers the true gain |")
    print("| --- | --- | --- | --- | --- |")
    for case, (draw, gain) in CASES.items():
        for name, looks in PROCEDURES.items():
            looks = looks or NaiveLooks(plan_looks(3, 24).counts)
            result = simulate(draw, gain, looks, args.trials, rng)
            print(f"| {case} | {name} | {100 * result['change']:.1f}% | {result['seeds']:.1f} | "
                  f"{100 * result['covered']:.1f}% |", flush=True)


if __name__ == "__main__":
    main()
