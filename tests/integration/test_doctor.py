"""`cnnlab doctor` end to end on a tiny synthetic task: a planted init problem is found at init
and fixed with only its keys changed, a healthy config is kept, an interrupted doctor resumes
from its study, a budget too small says what budget would do, and nothing is written outside
--out. On the user's own network: a model= factory gets its planted init found and fixed, an
instance with workers is refused, and a torchvision config runs end to end."""

from __future__ import annotations

import copy
import json
import os

import optuna
import pytest
import torch
import yaml
from torch import nn
from torch.nn import functional as F

from cnnlab.doctor import doctor
from cnnlab.doctor.answer import KEEP
from cnnlab.doctor.folder import MARKER
from cnnlab.errors import UserError
from cnnlab.experiments.store import open_storage
from tests.conftest import cli

# A 6-layer plain ReLU net without normalization on an easy synthetic task: with normal(0, 0.01)
# the signal vanishes in the first layer and it stays at chance; a fan-scaled init learns it.
PLANTED = {
    "name": "planted", "seed": 0,
    "data": {"dataset": "synthetic", "batch_size": 32, "val_split": 0.25,
             "synthetic": {"num_classes": 4, "image_size": 8, "train_size": 384,
                           "test_size": 64, "noise": 0.1}},
    "model": {"arch": "plain", "depth": 6, "width": 16, "norm": "none", "activation": "relu",
              "init": {"name": "normal", "std": 0.01}},
    "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "schedule": {"name": "constant"},
    "train": {"epochs": 3, "threads": 1, "grad_clip": 1.0},
    "diagnostics": {"every": 0},
}
# Generous: the runs take seconds; a loaded machine must not cut the trials short.
BUDGET = "10m"


def write(folder, raw: dict, name: str = "config.yaml"):
    path = folder / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def flat(raw: dict, prefix: str = "") -> dict:
    items = {}
    for key, value in raw.items():
        if isinstance(value, dict) and not (prefix == "model." and key == "init"):
            items.update(flat(value, f"{prefix}{key}."))
        else:
            items[prefix + key] = value
    return items


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """One doctor run on the planted problem, in a folder of its own (its cwd)."""
    folder = tmp_path_factory.mktemp("planted")
    config = write(folder, PLANTED)
    before = set(os.listdir(folder))
    lines: list[str] = []
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        answer = doctor(config, budget=BUDGET, seeds=3, out=folder / "out", say=lines.append)
    finally:
        os.chdir(cwd)
    return {"folder": folder, "config": config, "answer": answer, "lines": lines,
            "before": before}


def test_planted_init_problem_is_found_at_init_and_only_its_keys_change(planted):
    answer = planted["answer"]
    assert answer["at_init"]["verdict"] == "vanishing"
    assert answer["at_init"]["candidates"]
    assert all(c["verdict"] == "healthy" for c in answer["at_init"]["candidates"])
    assert answer["decision"] == "change"
    assert "model.init" in answer["changes"]
    assert set(answer["changes"]) <= {"model.init", "optim.lr"}
    winner = next(c for c in answer["comparisons"] if c["label"] == answer["winner"])
    assert winner["ci"][0] > 0 and winner["n"] >= 2
    recommended = yaml.safe_load((planted["folder"] / "out" / "recommended.yaml").read_text())
    changed = {k for k, v in flat(recommended).items() if flat(PLANTED).get(k) != v}
    assert changed == {"model." + k.split(".")[-1] if k.startswith("model") else k
                       for k in answer["changes"]}
    assert recommended["model"]["init"] == answer["changes"]["model.init"]
    # The plan is printed before the trials start, from the measured epoch time.
    plan_at = next(i for i, line in enumerate(planted["lines"]) if line.startswith("plan: "))
    first_trial = next(i for i, line in enumerate(planted["lines"]) if line.startswith("trials:"))
    assert plan_at < first_trial
    assert "runs" in planted["lines"][plan_at] and " = " in planted["lines"][plan_at]


def test_first_seed_trials_read_the_lr_runs_of_their_config_instead_of_training_again(planted):
    answer = planted["answer"]
    storage = open_storage(answer["storage"])
    lr_study = optuna.load_study(study_name=f"{answer['study']}-lr", storage=storage)
    trial_study = optuna.load_study(study_name=answer["study"], storage=storage)
    lr_runs = {t.user_attrs["run_dir"]: t for t in lr_study.get_trials()
               if t.state == optuna.trial.TrialState.COMPLETE}
    assert lr_study.user_attrs["trial_epochs"] == answer["trial_epochs"] == 3
    reused = [t for t in trial_study.get_trials() if t.user_attrs["run_dir"] in lr_runs]
    # Every proposal with its confirmed LR is one of the LR phase's runs on the first seed (the
    # original too, where the bracket held its own LR).
    with_lr = {t.user_attrs["label"] for t in trial_study.get_trials() if "lr=" in
               t.user_attrs["label"]}
    assert with_lr and with_lr <= {t.user_attrs["label"] for t in reused}
    plan = next(line for line in planted["lines"] if line.startswith("plan: "))
    assert f"{len(reused)} reused from the LR phase" in plan
    for trial in reused:
        assert trial.user_attrs["seed"] == 0 and trial.value == lr_runs[
            trial.user_attrs["run_dir"]].value
        # Its epochs were reported to the pruner, as a run trained here would have been.
        assert sorted(trial.intermediate_values) == [1, 2, 3]


def test_outputs_go_under_out_only(planted):
    folder = planted["folder"]
    assert set(os.listdir(folder)) - planted["before"] == {"out"}
    out = folder / "out"
    for name in ("recommended.yaml", "report.html", "doctor.json", MARKER):
        assert (out / name).exists(), name
    # The doctor chooses on val_acc: none of its runs spent time on the test split.
    summaries = [json.loads(path.read_text()) for path in out.rglob("summary.json")]
    assert summaries and not [s for s in summaries if "test_acc" in s]
    report = (out / "report.html").read_text()
    assert "Paired trials" in report and "signal propagation" in report
    assert json.loads((out / "doctor.json").read_text())["decision"] == "change"


def test_a_second_run_resumes_the_study_and_trains_nothing_again(planted, monkeypatch):
    from cnnlab.doctor import main
    from cnnlab.doctor.rounds import Looks

    # This time the budget would plan a single look: the resumed study must keep its own.
    assert planted["answer"]["planned_looks"] != [3]
    monkeypatch.setattr(main, "affordable_looks", lambda *args: Looks((3,)))
    out = planted["folder"] / "out"
    summaries = sorted(out.rglob("summary.json"))
    stamps = {path: path.stat().st_mtime_ns for path in summaries}
    lines: list[str] = []
    cwd = os.getcwd()
    os.chdir(planted["folder"])
    try:
        answer = doctor(planted["config"], budget=BUDGET, seeds=3, out=out, say=lines.append)
    finally:
        os.chdir(cwd)
    assert not [line for line in lines if ": run " in line]
    assert sorted(out.rglob("summary.json")) == summaries
    assert all(path.stat().st_mtime_ns == stamps[path] for path in summaries)
    assert answer["changes"] == planted["answer"]["changes"]
    assert answer["planned_looks"] == planted["answer"]["planned_looks"]


def test_an_interrupted_doctor_resumes_with_its_finished_trials(tmp_path):
    """Ctrl-C as the third trial starts; the next run goes on from there, training only the
    trials that had not finished."""
    raw = copy.deepcopy(PLANTED)
    raw["model"]["init"] = "kaiming_normal"
    config = write(tmp_path, raw)
    out = tmp_path / "out"

    def stop_at_third(line: str) -> None:
        if line.startswith("trials: run 3/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        doctor(config, budget=BUDGET, seeds=2, out=out, say=stop_at_third)
    # The two trials that finished before Ctrl-C, in the study (a first-seed trial may be an
    # LR-phase run's folder), and every run folder, which the resume must leave alone.
    trials = optuna.load_study(study_name="planted-doctor",
                               storage=open_storage(str(out / "optuna.journal"))).get_trials()
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) == 2
    finished = {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("summary.json")}
    lines: list[str] = []
    doctor(config, budget=BUDGET, seeds=2, out=out, say=lines.append)
    ran = [line for line in lines if line.startswith("trials: run")]
    assert ran[0].startswith("trials: run 3/")
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in finished.items())


def test_a_healthy_config_is_kept(tmp_path):
    raw = copy.deepcopy(PLANTED)
    raw["model"]["init"] = "kaiming_normal"
    config = write(tmp_path, raw)
    answer = doctor(config, budget=BUDGET, seeds=2, out=tmp_path / "out", say=lambda _: None)
    assert answer["at_init"]["verdict"] == "healthy"
    assert answer["decision"] == KEEP
    recommended = yaml.safe_load((tmp_path / "out" / "recommended.yaml").read_text())
    assert flat(recommended) == flat(raw)


def test_with_nothing_but_the_original_left_no_trials_run(tmp_path, monkeypatch):
    """Healthy at init and its confirmed LR its own: trials of the original alone would compare
    it with nothing, so none run and the answer is to keep it."""
    from cnnlab.doctor import main

    keep_only_original = main._proposals
    monkeypatch.setattr(main, "_proposals",
                        lambda screening, choices: keep_only_original(screening, choices)[:1])
    raw = copy.deepcopy(PLANTED)
    raw["model"]["init"] = "kaiming_normal"
    lines: list[str] = []
    answer = doctor(write(tmp_path, raw), budget=BUDGET, seeds=2, out=tmp_path / "out",
                    say=lines.append)
    assert answer["decision"] == KEEP and answer["comparisons"] == []
    assert answer["complete"] and answer["plan"] == "no trials: nothing to compare"
    assert not [line for line in lines if line.startswith("trials: run")]
    assert not (tmp_path / "out" / "runs" / "planted-doctor").exists()
    assert (tmp_path / "out" / "recommended.yaml").exists()


def test_max_seeds_below_seeds_is_refused_in_one_sentence(tmp_path):
    with pytest.raises(UserError, match="--max-seeds 2 is below --seeds 3"):
        doctor(write(tmp_path, PLANTED), seeds=3, max_seeds=2, out=tmp_path / "out",
               say=lambda _: None)


def test_a_budget_too_small_says_what_budget_would_do(tmp_path):
    raw = copy.deepcopy(PLANTED)
    raw["model"]["init"] = "kaiming_normal"  # healthy: no screening, straight to the LR phase
    config = write(tmp_path, raw)
    with pytest.raises(UserError) as caught:
        # 0.01 s: the init and range-test phases alone take longer on any machine. (1 s was
        # enough for this tiny task once another doctor had warmed the process up.)
        doctor(config, budget="0.01s", seeds=3, out=tmp_path / "out", say=lambda _: None)
    message = str(caught.value)
    assert "too small for even one trial per candidate" in message
    assert "would run one epoch of each" in message


def test_an_out_folder_with_the_users_files_is_refused(tmp_path):
    config = write(tmp_path, PLANTED)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    result = cli("doctor", str(config), "--out", str(mine), "--budget", "1m", cwd=tmp_path)
    assert result.returncode == 2
    assert "holds files not made by cnnlab doctor" in result.stderr
    assert (mine / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(mine)) == ["notes.txt"]


class PlantedNet(nn.Module):
    """The planted problem on a network given in Python: 6 plain convs without norm, ReLU called
    as a function (so the doctor cannot swap the activation), conv weights normal(0, 0.01)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels if i == 0 else width, width, 3, padding=1) for i in range(6))
        self.head = nn.Linear(width, num_classes)
        for conv in self.convs:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.head(x.mean(dim=(2, 3)))


def without_model(raw: dict) -> dict:
    raw = copy.deepcopy(raw)
    del raw["model"]
    return raw


def test_a_factory_model_gets_its_init_problem_found_and_fixed(tmp_path):
    """model= (a factory): the vanishing signal is found at init on the user's own network, the
    activation swap its functional ReLU refuses is skipped with a note, and the answer changes
    model.init only (with perhaps the LR) in recommended.yaml."""
    raw = without_model(PLANTED)
    config = write(tmp_path, raw)
    lines: list[str] = []
    answer = doctor(config, budget=BUDGET, seeds=3, out=tmp_path / "out", say=lines.append,
                    model=PlantedNet)
    assert answer["at_init"]["verdict"] == "vanishing"
    assert any(line.startswith("at init: skipped model.activation") for line in lines)
    assert answer["decision"] == "change"
    assert "model.init" in answer["changes"]
    assert set(answer["changes"]) <= {"model.init", "optim.lr"}
    recommended = yaml.safe_load((tmp_path / "out" / "recommended.yaml").read_text())
    changed = {k for k, v in flat(recommended).items() if flat(raw).get(k) != v}
    assert changed == {"model.init" if k == "model.init" else k for k in answer["changes"]}
    assert recommended["model"] == {"init": answer["changes"]["model.init"]}


def test_an_instance_with_workers_is_refused_in_one_sentence(tmp_path):
    config = write(tmp_path, without_model(PLANTED))
    with pytest.raises(UserError) as caught:
        doctor(config, workers=2, out=tmp_path / "out", model=PlantedNet(3, 4))
    message = str(caught.value)
    assert "workers=2" in message and "arch: file" in message
    assert message.count(". ") == 0 and "\n" not in message
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="must be a factory"):
        doctor(config, out=tmp_path / "out", model=PlantedNet(3, 4))


def test_a_torchvision_config_runs_end_to_end(tmp_path):
    raw = copy.deepcopy(PLANTED)
    raw["model"] = {"arch": "torchvision.resnet18", "small_input": True}
    raw["data"]["synthetic"].update(train_size=64, test_size=32)
    raw["train"]["epochs"] = 1
    config = write(tmp_path, raw)
    answer = doctor(config, budget="3m", seeds=2, out=tmp_path / "out", say=lambda _: None)
    assert answer["at_init"]["verdict"]
    assert answer["decision"] in (KEEP, "change")
    assert answer["lr"][0]["label"] == "original" and answer["lr"][0]["tried"]
    assert (tmp_path / "out" / "recommended.yaml").exists()
    assert any(c["n"] >= 1 for c in answer["comparisons"])
