"""Studies without training: one storage rule for every command, a study that says what it is
and is served by that, and Optuna's private attributes reached in one module (issue 16, item 5).
"""

from __future__ import annotations

import ast
import inspect
import time
from pathlib import Path

import optuna
import pytest
import yaml

import cnnlab
from cnnlab.errors import UserError
from cnnlab.experiments.ablate import ablate
from cnnlab.experiments.search import search
from cnnlab.experiments.store import load_study, open_storage
from cnnlab.experiments.study import create_or_resume, next_trial, open_study
from cnnlab.experiments.trial_queue import claim, hand_back, requeue_stale

PACKAGE_ROOT = Path(cnnlab.__file__).parent
QUEUE_MODULE = PACKAGE_ROOT / "experiments" / "trial_queue.py"


def write_config(folder: Path, tiny: dict) -> str:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny))
    return str(path)


def write_space(folder: Path) -> str:
    path = folder / "space.yaml"
    path.write_text("optim.lr: {low: 1.0e-3, high: 0.1, log: true}\n")
    return str(path)


def test_only_the_trial_queue_reaches_into_another_objects_private_attributes():
    """`study._storage`, `trial._trial_id` and the like change between Optuna versions: one
    module holds them all. (journal.py's subclass of Optuna's journal backend uses its own
    inherited members through `self`, which this does not count.)"""
    found = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            own = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in ("self", "cls")
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and not own):
                found.append((path, f"{path.relative_to(PACKAGE_ROOT)}:{node.lineno} "
                                    f"{ast.unparse(node)}"))
    assert found, "the walk found no private attribute at all: it checks nothing"
    outside = [where for path, where in found if path != QUEUE_MODULE]
    assert not outside, f"private attributes outside trial_queue.py: {outside}"


@pytest.mark.parametrize("function", [ablate, search])
def test_ablate_and_search_take_everything_after_the_config_by_keyword(function):
    parameters = list(inspect.signature(function).parameters.values())
    assert parameters[0].kind == inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert all(p.kind == inspect.Parameter.KEYWORD_ONLY for p in parameters[1:])


def test_ablate_and_search_use_cnnlab_storage_when_no_storage_is_given(tmp_path, tiny,
                                                                       monkeypatch, capsys):
    journal = tmp_path / "env.journal"
    monkeypatch.setenv("CNNLAB_STORAGE", str(journal))
    monkeypatch.chdir(tmp_path)  # the default runs/optuna.journal would land here
    config = write_config(tmp_path, tiny)
    ablate(config, vary=["optim.lr=0.1,0.05"], seeds=1, workers=0, study_name="a")
    search(config, space_path=write_space(tmp_path), trials=2, workers=0, study_name="s")
    err = capsys.readouterr().err
    assert f"study a in {journal}:" in err and f"study s in {journal}:" in err
    names = {s.study_name for s in optuna.get_all_study_summaries(open_storage(str(journal)))}
    assert names == {"a", "s"}
    assert not (tmp_path / "runs" / "optuna.journal").exists()


def test_a_search_is_opened_with_its_sampler_and_pruner_and_served_within_its_budget(tmp_path,
                                                                                     tiny):
    journal = str(tmp_path / "s.journal")
    search(write_config(tmp_path, tiny), space_path=write_space(tmp_path), trials=2,
           sampler="random", pruner="hyperband", workers=0, storage_url=journal,
           study_name="s")
    study = open_study(open_storage(journal), "s", salt=0)
    assert isinstance(study.sampler, optuna.samplers.RandomSampler)
    assert isinstance(study.pruner, optuna.pruners.HyperbandPruner)
    asked = [next_trial(study), next_trial(study)]
    assert all(trial is not None for trial in asked)
    assert next_trial(study) is None  # two runs is the budget
    hand_back(study, asked[0])  # a run put back is served before the budget is looked at
    assert next_trial(study).number == asked[0].number


def test_an_ablation_serves_its_queued_runs_in_order_then_none(tmp_path, tiny):
    journal = str(tmp_path / "a.journal")
    ablate(write_config(tmp_path, tiny), vary=["optim.lr=0.1,0.05"], seeds=2, workers=0,
           storage_url=journal, study_name="a")
    study = open_study(open_storage(journal), "a")
    claimed = [next_trial(study) for _ in range(4)]
    assert [t.number for t in claimed] == [0, 1, 2, 3]
    assert next_trial(study) is None


def test_a_run_whose_worker_stopped_beating_is_put_back_once(tmp_path, tiny):
    journal = str(tmp_path / "a.journal")
    ablate(write_config(tmp_path, tiny), vary=["optim.lr=0.1,0.05"], seeds=1, workers=0,
           storage_url=journal, study_name="a")
    study = load_study(open_storage(journal), "a")
    trial = claim(study)
    trial.set_user_attr("heartbeat", time.time() - 60)
    assert requeue_stale(study, grace=30.0) == [trial.number]
    assert requeue_stale(study, grace=30.0) == []
    assert claim(study).number == trial.number


def test_a_study_name_taken_by_another_design_is_a_user_error_naming_what_differs():
    storage = optuna.storages.InMemoryStorage()
    spec = {"kind": "ablation", "config": {}, "factors": [], "seeds": [0], "metric": "val_acc"}
    create_or_resume(storage, "x", spec)
    assert create_or_resume(storage, "x", dict(spec)).study_name == "x"  # same design: resumed
    with pytest.raises(UserError, match="already exists with a different seeds, metric"):
        create_or_resume(storage, "x", {**spec, "seeds": [1], "metric": "val_loss"})



def test_the_doctors_pruner_stops_a_run_only_half_way_and_behind_its_own_seeds_baseline():
    """The CIFAR-10 ResNet-20 trials (README): LR 0.1 (the candidate) against the config's 0.01
    (the baseline), 1,000 validation images. On its second seed the candidate was behind the
    others after epoch 1 and below the top half after epoch 2 (0.275 against 0.294 and 0.278),
    yet ahead of the baseline on that seed (0.272); it ended ahead on the first seed."""
    import optuna

    from cnnlab.experiments.study import PairedHalving

    finished = [("original", 0, [0.205, 0.278, 0.362, 0.341]),
                ("original", 1, [0.186, 0.272, 0.320, 0.339]),
                ("lr=0.104", 0, [0.151, 0.294, 0.388, 0.420])]

    def stopped_at(pruner, curve: list[float]) -> int | None:
        study = optuna.create_study(direction="maximize", pruner=pruner)
        study.set_user_attr("factors", [{"key": "candidate", "baseline": "original",
                                         "values": ["original", "lr=0.104"]}])
        for label, seed, values in finished:
            trial = study.ask()
            trial.set_user_attr("label", label)
            trial.set_user_attr("seed", seed)
            for epoch, value in enumerate(values, start=1):
                trial.report(value, epoch)
                trial.should_prune()  # what the runner asks after every epoch
            study.tell(trial, values[-1])
        trial = study.ask()
        trial.set_user_attr("label", "lr=0.104")
        trial.set_user_attr("seed", 1)
        for epoch, value in enumerate(curve, start=1):
            trial.report(value, epoch)
            if trial.should_prune():
                return epoch
        return None

    halving = optuna.pruners.SuccessiveHalvingPruner
    # Halving alone stops it: at epoch 1 from rungs at 1, at epoch 2 from rungs at 2.
    assert stopped_at(halving(min_resource=1, reduction_factor=2), [0.183, 0.275]) == 1
    assert stopped_at(halving(min_resource=2, reduction_factor=2), [0.183, 0.275]) == 2
    assert stopped_at(PairedHalving(trial_epochs=4, val_images=1000), [0.183, 0.275]) is None
    # Clearly behind its own seed's baseline half-way (0.12 against 0.272): stopped.
    assert stopped_at(PairedHalving(trial_epochs=4, val_images=1000), [0.10, 0.12]) == 2
