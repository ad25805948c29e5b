"""Run one trial of a study: build its config, train or resume its run folder, record the result.

The study's user attributes hold the experiment (base config, factors, seeds, metric, search
space); each trial's hold its overrides, seed and run folder. A trial whose worker died is
claimed again and resumes its run folder from the last checkpoint.
"""

from __future__ import annotations

import math
import traceback
from pathlib import Path

import optuna
from optuna.trial import TrialState

from cnnlab.config import load_config
from cnnlab.errors import Interrupted, NonFiniteLossError
from cnnlab.experiments.design import choice_text, folder_name, load_space_dict
from cnnlab.experiments.trial_queue import hand_back
from cnnlab.metric_names import RECORDED_IN_TRIALS, summary_value
from cnnlab.models.user_code import SuppliedModel
from cnnlab.rundir import RunDir, read_json_lines
from cnnlab.train import resume, train


def search_overrides(trial: optuna.Trial, space: dict) -> list[str]:
    """Ask the sampler for this trial's point of the search space, as config overrides."""
    result = []
    for key, entry in load_space_dict(space).items():
        if hasattr(entry, "choices"):
            options = [choice_text(c) for c in entry.choices]
            value = trial.suggest_categorical(key, options)
        elif entry.type == "int":
            value = trial.suggest_int(key, entry.low, entry.high, step=entry.step, log=entry.log)
        else:
            value = trial.suggest_float(key, entry.low, entry.high, log=entry.log,
                                        step=entry.step)
        result.append(f"{key}={value}")
    return result


def prepare(study: optuna.Study, trial: optuna.Trial) -> tuple[list[str], Path]:
    attrs = study.user_attrs
    if attrs["kind"] in ("ablation", "doctor"):  # every run queued up front, with its overrides
        for factor in attrs["factors"]:
            trial.suggest_categorical(factor["key"], factor["values"])  # fixed at enqueue
        trial.suggest_categorical("seed", attrs["seeds"])
        return list(trial.user_attrs["overrides"]), Path(trial.user_attrs["run_dir"])
    extra = search_overrides(trial, attrs["space"])
    folder = Path(attrs["runs_root"]) / folder_name(study.study_name) / f"trial{trial.number}"
    trial.set_user_attr("overrides", extra)
    trial.set_user_attr("run_dir", str(folder))
    return extra + [f"seed={attrs['seed']}"], folder


def _replay(run: RunDir, observe) -> None:
    """Report a finished run's epochs to the pruner, as if it had trained now: its values at each
    rung are what later runs are judged against. (A run found finished: its worker died before
    telling the study, or the doctor reuses an LR-phase run as a trial.)"""
    if run.metrics_path.exists():
        for record in read_json_lines(run.metrics_path):
            observe(record)  # finished: whatever the pruner says, there is nothing to stop


def run_trial(study: optuna.Study, trial: optuna.Trial, threads: int | None,
              progress: bool = False, supplied: SuppliedModel | None = None) -> str:
    """Train the trial's run and tell the study how it ended; returns the status. `supplied`:
    the network of a study made with model= (a factory)."""
    attrs = study.user_attrs
    metric = attrs["metric"]
    pruning = attrs.get("pruner", "none") != "none"
    # The doctor's baseline (the user's own config) is what every candidate is paired with: it
    # reports to the pruner, so the others are judged against it, but always runs to the end.
    protected = bool(trial.user_attrs.get("unpruned"))
    try:
        extra, folder = prepare(study, trial)
        if threads:
            extra = extra + [f"train.threads={threads}"]

        def observe(record: dict) -> bool:
            value = record.get(metric)
            if value is None or not math.isfinite(value):
                return False
            trial.report(value, record["epoch"])
            return pruning and trial.should_prune() and not protected

        if RunDir.at(folder).config.exists():
            summary = resume(folder, progress=progress, on_epoch=observe, model=supplied)
            if summary.get("already_finished"):
                _replay(RunDir.at(folder), observe)
        else:
            cfg = load_config(attrs["config"], extra)
            summary = train(cfg, out=folder, progress=progress, on_epoch=observe,
                            model=supplied)
    except Interrupted:
        # Stopped on request with a checkpoint written: hand the run back at once.
        hand_back(study, trial)
        raise
    except NonFiniteLossError as error:
        trial.set_user_attr("status", "diverged")
        trial.set_user_attr("error", str(error))
        study.tell(trial, state=TrialState.FAIL)
        return "diverged"
    except Exception as error:  # noqa: BLE001 - one bad run must not stop the study
        trial.set_user_attr("status", "failed")
        trial.set_user_attr("error", f"{type(error).__name__}: {error}")
        trial.set_user_attr("traceback", traceback.format_exc()[-4000:])
        study.tell(trial, state=TrialState.FAIL)
        return "failed"

    for key in RECORDED_IN_TRIALS:
        if key in summary:
            trial.set_user_attr(key, summary[key])
    value = summary_value(summary, metric)
    if summary.get("status") == "diverged":
        trial.set_user_attr("status", "diverged")
        trial.set_user_attr("error", summary.get("diverged_reason", "a non-finite loss"))
        study.tell(trial, state=TrialState.FAIL)
        return "diverged"
    if summary.get("status") == "pruned":
        trial.set_user_attr("status", "pruned")
        study.tell(trial, state=TrialState.PRUNED)
        return "pruned"
    if value is None:
        trial.set_user_attr("status", "failed")
        trial.set_user_attr("error", f"the run has no {metric}")
        study.tell(trial, state=TrialState.FAIL)
        return "failed"
    trial.set_user_attr("status", "completed")
    study.tell(trial, value)
    return "completed"
