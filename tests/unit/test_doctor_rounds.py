"""The doctor's paired seeds: more seeds while a proposal is ahead with an interval across zero,
each look's interval widened so that all the looks together keep 95%, the budget respected, and
a proposal stopped by halving never winning on the seeds it was not stopped on."""

from __future__ import annotations

import pytest

from cnnlab.doctor.answer import KEEP, Proposal, decide, summary_text
from cnnlab.doctor.rounds import Looks, affordable_looks, plan_looks, run_rounds
from cnnlab.experiments.statistics import t_interval

ORIGINAL = Proposal("original", {}, "yours")
LR = Proposal("lr=0.05", {"optim.lr": "0.05"}, "range test")
WORSE = Proposal("lr=0.5", {"optim.lr": "0.5"}, "range test")


class Budget:
    """A clock with `left` seconds that each trained run spends `run_seconds` of."""

    def __init__(self, left: float) -> None:
        self.spent, self.budget = 0.0, left

    def left(self) -> float:
        return self.budget - self.spent

    def used(self) -> float:
        return self.spent


class Trainer:
    """Trains from a table (label -> seed -> val_acc): records every run asked for."""

    def __init__(self, table: dict[str, dict[int, float]], clock: Budget, run_seconds: float):
        self.table, self.clock, self.run_seconds = table, clock, run_seconds
        self.done: dict[str, dict[int, float]] = {}
        self.asked: list[tuple[str, int]] = []

    def train(self, active: list[Proposal], seeds: list[int]) -> bool:
        for proposal in active:
            for seed in seeds:
                if seed in self.done.get(proposal.label, {}):
                    continue
                self.asked.append((proposal.label, seed))
                self.clock.spent += self.run_seconds
                self.done.setdefault(proposal.label, {})[seed] = self.table[proposal.label][seed]
        return True

    def measured(self):
        return self.done, {}


def _run(table, proposals, looks, left=1e9, run_seconds=1.0):
    clock = Budget(left)
    trainer = Trainer(table, clock, run_seconds)
    answer = run_rounds(proposals, list(range(max(looks.counts))), looks, trainer.train,
                        trainer.measured, clock, run_seconds, lambda _: None)
    return answer, trainer


# The original collapses on some seeds (as at LR 0.5 on digits), the proposal never does.
COLLAPSING = {0: 0.98, 1: 0.10, 2: 0.97, 3: 0.12, 4: 0.98, 5: 0.11, 6: 0.97, 7: 0.98,
              8: 0.10, 9: 0.98, 10: 0.11, 11: 0.97}
STEADY = {seed: 0.98 + 0.002 * (seed % 3) for seed in range(12)}


def test_looks_double_from_the_first_count_and_split_the_error_between_them():
    assert plan_looks(3, 12).counts == (3, 6, 12)
    assert plan_looks(3, 10).counts == (3, 6, 10)
    assert plan_looks(5, 5).counts == (5,)
    assert plan_looks(3, 12).confidence == pytest.approx(1 - 0.05 / 3)
    assert plan_looks(3, 3).confidence == pytest.approx(0.95)


def test_only_the_looks_the_budget_could_hold_are_planned():
    # 60 s after the first look hold 3 more seeds of the original and one candidate (10 s runs).
    assert affordable_looks(3, 24, seconds_left=60.0, run_seconds=10.0).counts == (3, 6)
    assert affordable_looks(3, 24, seconds_left=59.0, run_seconds=10.0).counts == (3, 5)
    assert affordable_looks(3, 24, seconds_left=1e6, run_seconds=10.0).counts == (3, 6, 12, 24)
    assert affordable_looks(3, 24, seconds_left=-5.0, run_seconds=10.0).counts == (3,)


def test_an_open_interval_gets_more_seeds_until_it_clears_zero():
    table = {"original": COLLAPSING, "lr=0.05": STEADY}
    answer, trainer = _run(table, [ORIGINAL, LR], plan_looks(3, 12))
    # 3 seeds: ahead by +0.29 on average, interval across zero; 6 seeds: still across at the
    # per-look level; 12 seeds: cleared.
    assert answer["looks"] == [3, 6, 12]
    assert answer["decision"] == "change" and answer["changes"] == {"optim.lr": "0.05"}
    best = answer["comparisons"][0]
    differences = [STEADY[s] - COLLAPSING[s] for s in range(12)]
    assert best["n"] == 12
    assert best["ci"] == pytest.approx(list(t_interval(differences, 1 - 0.05 / 3)))
    assert len(trainer.asked) == 24  # every seed once, of both configs


def test_a_proposal_behind_or_already_clear_gets_no_more_seeds():
    table = {"original": STEADY, "lr=0.05": COLLAPSING, "lr=0.5": COLLAPSING}
    answer, trainer = _run(table, [ORIGINAL, LR, WORSE], plan_looks(3, 12))
    assert answer["looks"] == [3] and answer["decision"] == KEEP
    assert max(seed for _, seed in trainer.asked) == 2


def test_only_the_original_and_the_open_proposals_run_on_the_added_seeds():
    worse = {seed: 0.5 for seed in range(12)}
    table = {"original": COLLAPSING, "lr=0.05": STEADY, "lr=0.5": worse}
    answer, trainer = _run(table, [ORIGINAL, LR, WORSE], plan_looks(3, 6))
    added = {label for label, seed in trainer.asked if seed >= 3}
    assert added == {"original", "lr=0.05"}
    assert answer["looks"] == [3, 6]


def test_the_budget_shortens_a_round_and_says_what_would_finish_it():
    table = {"original": COLLAPSING, "lr=0.05": STEADY}
    # 6 runs of 10 s, then 25 s left: one more seed of both (20 s), not three.
    answer, trainer = _run(table, [ORIGINAL, LR], plan_looks(3, 12), left=85.0,
                           run_seconds=10.0)
    assert answer["looks"] == [3, 4]
    assert answer["decision"] == KEEP
    assert "re-run the same command with --budget" in answer["more_seeds"]
    assert "lr=0.05 is ahead with an interval across zero at 4 seeds" in answer["more_seeds"]
    assert "more_seeds" in answer and answer["more_seeds"] in summary_text(
        {**answer, "at_init": {}})


def test_never_more_looks_than_planned_even_when_a_round_is_cut_short():
    table = {"original": COLLAPSING, "lr=0.05": STEADY}
    looks = Looks((3, 6))
    answer, _ = _run(table, [ORIGINAL, LR], looks, left=85.0, run_seconds=10.0)
    assert len(answer["looks"]) <= 2


def test_one_look_is_the_usual_95_percent_and_says_nothing_of_looks():
    table = {"original": COLLAPSING, "lr=0.05": STEADY}
    answer, trainer = _run(table, [ORIGINAL, LR], plan_looks(3, 3))
    assert answer["looks"] == [3] and answer["confidence"] == pytest.approx(0.95)
    assert "looked at" not in summary_text({**answer, "at_init": {}})


def test_the_summary_names_the_looks_and_their_level():
    table = {"original": COLLAPSING, "lr=0.05": STEADY}
    answer, _ = _run(table, [ORIGINAL, LR], plan_looks(3, 12))
    text = summary_text({**answer, "at_init": {}})
    assert "seeds: looked at 3 then 6 then 12 paired seeds" in text
    assert "98.33% CI [" in text


def test_a_proposal_stopped_by_halving_cannot_win_on_its_other_seeds():
    # Ahead by 0.4 on seeds 0 and 1, stopped (behind) on seed 2: leaving seed 2 out would make
    # it a clear winner at n = 2.
    table = {"original": {0: 0.5, 1: 0.5, 2: 0.5}, "lr=0.05": {0: 0.9, 1: 0.91}}
    answer = decide([ORIGINAL, LR], table, pruned={"lr=0.05": {2}})
    assert answer["decision"] == KEEP
    assert answer["comparisons"][0]["pruned"] == [2]
    assert "stopped by successive halving on seed 2" in summary_text({**answer, "at_init": {}})


def test_a_look_uses_only_its_own_seeds():
    # A resumed doctor may hold runs of later seeds already: the first look must not see them.
    table = {"original": COLLAPSING, "lr=0.05": STEADY}
    answer = decide([ORIGINAL, LR], table, seeds=[0, 1, 2])
    assert answer["comparisons"][0]["n"] == 3 and answer["original_seeds"] == [0, 1, 2]


def test_a_phase_whose_runs_all_finished_is_complete_even_with_no_time_left(tmp_path):
    """On CIFAR-10 the last run finished with 44 s left, less than a run takes, and the doctor
    said the budget ran out before every trial finished: none was waiting."""
    from cnnlab.doctor.plan import Clock
    from cnnlab.doctor.trials import open_phase, serve

    base = {"name": "done", "seed": 0, "data": {"dataset": "synthetic"}}
    study = open_phase(f"{tmp_path / 'optuna.journal'}", "done", base, ["original"], [0],
                       pruned=False, epochs=1)
    lines: list[str] = []
    assert serve(study, Clock(1.0), run_seconds=60.0, say=lines.append, phase="trials")
    assert not [line for line in lines if "budget spent" in line]


def test_the_seeds_a_proposal_earned_run_to_the_end():
    """Halving stops losers on the first look's seeds; a proposal given more seeds for being
    ahead is not cut mid-run on them (on CIFAR-10 it was, at epoch 2 of 4, and so could not
    win)."""
    from cnnlab.doctor import main

    runs = main._trial_runs([ORIGINAL, LR], seeds=[0, 1, 2, 3, 4], first_seeds=3,
                            trial_epochs=4, reuse={})
    protected = {(run.label, run.seed): run.baseline for run in runs}
    assert protected[("lr=0.05", 0)] and not protected[("lr=0.05", 1)]
    assert not protected[("lr=0.05", 2)]
    assert protected[("lr=0.05", 3)] and protected[("lr=0.05", 4)]
    assert all(protected[("original", seed)] for seed in range(5))


def test_an_answer_still_open_at_the_last_look_says_how_to_settle_it():
    """CIFAR-10: the budget planned looks at 3 and 4 seeds, the gain's interval was still across
    zero at 4, and re-running with more budget would resume the same looks."""
    table = {"original": COLLAPSING, "lr=0.05": STEADY}
    clock = Budget(1e9)
    trainer = Trainer(table, clock, 10.0)
    answer = run_rounds([ORIGINAL, LR], list(range(24)), Looks((3, 4)), trainer.train,
                        trainer.measured, clock, 10.0, lambda _: None, most=24)
    assert answer["looks"] == [3, 4] and answer["decision"] == KEEP
    assert "the last look the budget allowed" in answer["more_seeds"]
    assert "a new --out and a larger --budget (--budget" in answer["more_seeds"]
    answer, _ = _run(table, [ORIGINAL, LR], Looks((3, 4)))
    assert "the last look --max-seeds allowed" in answer["more_seeds"]
