"""The doctor's pure parts: the budget, the plan, the LR bracket, "not the LR", and the decision
(a candidate wins only by a 95% CI that excludes zero)."""

from __future__ import annotations

import pytest

from cnnlab.doctor.answer import KEEP, Proposal, decide, summary_text
from cnnlab.doctor.lr import LrChoice, best_of, bracket, diverged_everywhere, pick
from cnnlab.doctor.main import _not_the_lr, _reusable
from cnnlab.doctor.plan import confirm_epochs, fit_trials, parse_budget
from cnnlab.errors import UserError
from cnnlab.experiments.statistics import accuracy_difference_noise


@pytest.mark.parametrize("text, seconds", [("15m", 900), ("90s", 90), ("1h", 3600),
                                           ("2.5m", 150), ("45", 45), (30, 30)])
def test_budgets_are_read_in_seconds(text, seconds):
    assert parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-3m", "0", "15 minutes", "nan"])
def test_a_budget_that_is_not_a_positive_duration_is_refused(text):
    with pytest.raises(UserError):
        parse_budget(text)


def test_the_plan_shortens_trials_to_fit_and_says_the_total():
    plan = fit_trials(configs=4, seeds=3, epochs=10, epoch_seconds=2.0, overhead_seconds=1.0,
                      seconds_left=130.0)
    # 12 runs x (1 + 5 x 2) s = 132 s is over 130; 12 x (1 + 4 x 2) s = 108 s fits.
    assert plan.epochs == 4
    assert plan.runs == 12 and plan.seconds == 108.0
    assert plan.line() == "plan: 12 runs (4 configs x 3 seeds, 4 epochs each) x 9.0 s = 1.8 min"
    assert fit_trials(4, 3, 10, 2.0, 1.0, seconds_left=30.0) is None


def test_runs_the_lr_phase_already_trained_cost_nothing_so_longer_trials_fit():
    # As above, but 3 of the 5-epoch runs exist: 9 x (1 + 5 x 2) s = 99 s fits 130 s.
    plan = fit_trials(4, 3, 10, 2.0, 1.0, seconds_left=130.0, reusable={5: 3})
    assert plan.epochs == 5 and plan.reused == 3 and plan.seconds == 99.0
    assert plan.line() == ("plan: 12 runs (4 configs x 3 seeds, 5 epochs each; 3 reused from "
                           "the LR phase) x 11 s = 1.6 min")
    # Reused runs of another length change nothing.
    assert fit_trials(4, 3, 10, 2.0, 1.0, seconds_left=130.0, reusable={7: 3}).epochs == 4


def test_a_trial_reuses_an_lr_run_only_when_its_config_is_the_same(tmp_path):
    base = {"name": "reuse", "seed": 0, "data": {"dataset": "synthetic"},
            "model": {"arch": "simple_cnn"}, "optim": {"name": "sgd", "lr": 0.05},
            "train": {"epochs": 3}}
    original = LrChoice("original", {}, 0.05, {}, tried=[0.0316, 0.1, 0.316])
    lsuv = LrChoice("init=lsuv", {"model.init": "lsuv"}, 0.05, {}, tried=[0.0316, 0.1, 0.316])
    folders = {f"{c.label}@lr={lr}": tmp_path / f"{c.label}-{lr}"
               for c in (original, lsuv) for lr in c.tried}
    proposals = [Proposal("original", {}, ""),
                 Proposal("lr=0.1", {"optim.lr": "0.1"}, ""),
                 Proposal("init=lsuv,lr=0.316", {"model.init": "lsuv", "optim.lr": "0.316"}, "")]
    found = _reusable(base, proposals, [original, lsuv], folders, epochs=3, seed=0)
    # The original at its own 0.05 was never confirmed; the other two were, on this seed.
    assert found == {"lr=0.1": folders["original@lr=0.1"],
                     "init=lsuv,lr=0.316": folders["init=lsuv@lr=0.316"]}
    # A confirmation that did not complete has no folder: nothing to reuse.
    del folders["original@lr=0.1"]
    assert set(_reusable(base, proposals, [original, lsuv], folders, 3, 0)) == {
        "init=lsuv,lr=0.316"}


def _sweep(valley_config: float, valley_optimizer: float, last_lr: float) -> dict:
    return {"lrs": [1e-5, valley_optimizer, last_lr], "suggestions": {"valley": valley_optimizer},
            "optim_lr": {"valley": valley_config}}


def test_the_bracket_is_half_decades_around_10x_the_valley_capped_where_the_sweep_blew_up():
    assert bracket(_sweep(0.01, 0.01, 10.0), current=0.1) == [0.0316, 0.1, 0.316]
    # The loss passed 4x its best at 0.2: nothing above it is tried.
    assert bracket(_sweep(0.01, 0.01, 0.2), current=0.1) == [0.0316, 0.1, 0.2]
    # In config units: optim.lr is 2x the optimizer's LR here (a batch-scaled LR).
    assert bracket(_sweep(0.02, 0.01, 0.2), current=0.1) == [0.0632, 0.2, 0.4]


def test_the_pick_is_the_highest_lr_within_noise_of_the_best():
    # 180 validation images: the noise of a difference at 0.979 is 0.0151.
    assert accuracy_difference_noise(0.979, 180) == pytest.approx(0.0151, abs=5e-5)
    # ResNet-20 on digits, ten epochs on seed 0 (README): 0.979, 0.979, 0.965 -> the highest.
    assert best_of({0.0538: 0.979, 0.17: 0.979, 0.538: 0.965}, val_images=180) == 0.538
    # A gap larger than the noise is a real difference: the best stays.
    assert best_of({0.0538: 0.979, 0.17: 0.90, 0.538: 0.10}, val_images=180) == 0.0538
    # More images, less noise: the same gap now counts.
    assert best_of({0.0538: 0.979, 0.17: 0.979, 0.538: 0.965}, val_images=10_000) == 0.17
    assert best_of({0.01: 0.9, 0.1: None}, val_images=180) == 0.01
    assert best_of({0.01: None}, val_images=180) is None
    # Without a validation size: the best, a tie to the lower LR.
    assert best_of({0.01: 0.95, 0.1: 0.95}) == 0.01


def test_confirmations_are_as_long_as_the_config_when_that_fits_else_shorter():
    # 0.1 s a step, 10 steps an epoch: 1.3 s an epoch with evaluation.
    sweep = {"lrs": [0.0] * 40, "step_seconds": 0.1, "steps_per_epoch": 10}
    assert confirm_epochs(9, 10, sweep, overhead_seconds=2.0, seconds=200.0) == (10, 15.0)
    # 9 x (2 + 3 x 1.3) = 53.1 s fits 60 s; four epochs (64.8 s) do not.
    count, seconds = confirm_epochs(9, 10, sweep, overhead_seconds=2.0, seconds=60.0)
    assert count == 3 and seconds == pytest.approx(5.9)
    # Never less than one epoch, even when nothing fits.
    assert confirm_epochs(9, 10, sweep, overhead_seconds=2.0, seconds=1.0)[0] == 1


def test_a_valley_from_a_sweep_that_never_beat_a_uniform_guess_is_not_used():
    # ResNet-20 on CIFAR-10: the 40-step sweep fell only to a uniform guess (2.35 > ln 10) at
    # LRs above 1, and its valley was 2.4; the config's own 0.1 x {1/3, 1, 3} is tried instead.
    sweep = {**_sweep(2.4, 2.4, 10.0), "chance_loss": 2.303, "below_chance": False,
             "stopped": "completed"}
    assert bracket(sweep, current=0.1) == [0.0333, 0.1, 0.3]
    assert bracket({**sweep, "below_chance": True}, current=0.1) == [7.59, 10.0]
    # A sweep that blew up above chance found where training diverges: its valley stays.
    blew_up = {**sweep, "stopped": "loss passed 4x its best"}
    assert bracket(blew_up, current=0.1) == [7.59, 10.0]


def test_without_a_valley_the_bracket_is_around_the_configs_own_lr():
    assert bracket({"lrs": [], "suggestions": {"valley": None}, "optim_lr": {"valley": None}},
                   current=0.05) == [0.0167, 0.05, 0.15]


def test_every_lr_diverged_says_the_problem_is_not_the_lr():
    choice = LrChoice("original", {}, 0.1, {}, tried=[0.01, 0.1])
    pick(choice, {"original@lr=0.01": ("diverged", None), "original@lr=0.1": ("diverged", None)})
    assert diverged_everywhere(choice) and choice.best is None
    answer = _not_the_lr({"verdict": "exploding", "advice": "forward: std grows"}, [choice])
    assert "the problem is not the learning rate" in answer["message"]
    assert "exploding: forward: std grows" in answer["message"]
    # A run the budget never started is not a divergence.
    partial = LrChoice("original", {}, 0.1, {}, tried=[0.01, 0.1])
    pick(partial, {"original@lr=0.01": ("diverged", None)})
    assert not diverged_everywhere(partial)


PROPOSALS = [Proposal("original", {}, "yours"),
             Proposal("init=kaiming_normal", {"model.init": "kaiming_normal"}, "vanishing")]


def test_a_candidate_wins_only_by_a_ci_that_excludes_zero():
    original = {0: 0.50, 1: 0.52, 2: 0.51}
    clear = decide(PROPOSALS, {"original": original,
                               "init=kaiming_normal": {0: 0.80, 1: 0.83, 2: 0.81}})
    assert clear["decision"] == "change"
    assert clear["changes"] == {"model.init": "kaiming_normal"}
    assert clear["comparisons"][0]["ci"][0] > 0
    noisy = decide(PROPOSALS, {"original": original,
                               "init=kaiming_normal": {0: 0.80, 1: 0.40, 2: 0.55}})
    assert noisy["decision"] == KEEP and noisy["changes"] == {}
    assert KEEP in summary_text(noisy)
    one_seed = decide(PROPOSALS, {"original": original, "init=kaiming_normal": {0: 0.9}})
    assert one_seed["decision"] == KEEP


def test_the_summary_says_how_long_the_lr_confirmation_runs_were():
    answer = decide(PROPOSALS, {"original": {0: 0.5, 1: 0.52}, "init=kaiming_normal": {0: 0.5}})
    answer.update({"confirm_epochs": 3,
                   "lr": [{"label": "original", "valley": 0.017, "scores": {"0.0538": 0.98}}]})
    assert ("lr of original: range-test valley 0.017; val_acc after the 3-epoch confirmation "
            "run at 0.0538: 0.980") in summary_text(answer)


def test_a_runs_epoch_time_is_read_from_its_cumulative_seconds():
    from cnnlab.doctor.trials import split_run_time

    # ResNet-20 on CIFAR-10: `seconds` is the time since training started (23.3, 54.4, 81.2 s).
    # Read as each epoch's own, the plan took the whole run's 81.2 s for one epoch.
    lines = [{"seconds": 23.3}, {"seconds": 54.4}, {"seconds": 81.2}]
    epoch, outside = split_run_time(lines, wall=95.0)
    assert epoch == pytest.approx(31.1) and outside == pytest.approx(13.8)
    # A resumed run's clock starts again: its first epoch after the resume counts from 0.
    resumed = [{"seconds": 20.0}, {"seconds": 45.0}, {"seconds": 18.0}]
    assert split_run_time(resumed, 90.0) == (pytest.approx(25.0), pytest.approx(27.0))


def test_a_sweep_that_learned_nothing_is_run_again_longer(monkeypatch):
    from cnnlab.doctor import lr as doctor_lr

    calls = []

    def fake_range_test(cfg, supplied=None, steps=40):
        calls.append(steps)
        learned = steps > 40
        return {**_sweep(0.033 if learned else 2.4, 0.033 if learned else 2.4, 10.0),
                "chance_loss": 2.303, "below_chance": learned, "stopped": "completed"}

    monkeypatch.setattr(doctor_lr, "range_test", fake_range_test)
    lines = []
    base = {"name": "x", "data": {"dataset": "synthetic"}, "optim": {"name": "sgd", "lr": 0.1}}
    choice = doctor_lr.sweep_config(base, "original", {}, lines.append)
    assert calls == [40, doctor_lr.LONG_SWEEP_STEPS]
    assert "never got below a uniform guess's loss (2.30); sweeping again with 100" in lines[0]
    assert choice.tried == [0.104, 0.33, 1.04]
