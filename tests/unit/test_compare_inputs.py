"""`cnnlab compare` / `report` / `worker` on hand-made run folders and studies (no training):
unknown metrics, missing paths, $CNNLAB_STORAGE, degenerate statistics and strict JSON."""

import json
import math

import optuna
import pytest
import yaml

from cnnlab.cli import main
from cnnlab.experiments.store import open_storage

NAN = float("nan")


def _strict_loads(text: str):
    """json.loads that rejects NaN / Infinity, as strict parsers (JavaScript, Go, jq) do."""
    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")
    return json.loads(text, parse_constant=reject)


def _write_run(folder, activation: str, seed: int, summary: dict) -> None:
    folder.mkdir(parents=True)
    config = {"name": "t", "seed": seed, "model": {"activation": {"name": activation}}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "summary.json").write_text(json.dumps({"status": "completed", "seed": seed,
                                                     **summary}))
    record = {"epoch": 1, "val_acc": summary.get("final_val_acc"),
              "val_loss": summary.get("final_val_loss")}
    (folder / "metrics.jsonl").write_text(json.dumps(record) + "\n")


def _runs(tmp_path, gelu_shift: float = 0.002, seeds=(0, 1, 2)):
    root = tmp_path / "runs"
    for seed in seeds:
        base = 0.90 + 0.01 * seed
        _write_run(root / f"relu-{seed}", "relu", seed,
                   {"final_val_acc": base, "final_val_loss": 0.3, "best_val_acc": base})
        _write_run(root / f"gelu-{seed}", "gelu", seed,
                   {"final_val_acc": base + gelu_shift, "final_val_loss": 0.3,
                    "best_val_acc": base + gelu_shift})
    return root


RELU_BASELINE = ("--baseline", "model.activation.name=relu")


def _run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _study(journal, name="act", values=None):
    """An ablation study as `cnnlab ablate` leaves it: activation relu vs gelu, 3 seeds."""
    study = optuna.create_study(study_name=name, storage=open_storage(str(journal)),
                                direction="maximize")
    study.set_user_attr("kind", "ablation")
    study.set_user_attr("metric", "val_acc")
    study.set_user_attr("factors", [{"key": "model.activation", "baseline": "relu",
                                     "values": ["relu", "gelu"]}])
    values = values or {("relu", s): 0.9 + 0.01 * s for s in range(3)} | \
        {("gelu", s): 0.93 + 0.01 * s + 0.001 * s * s for s in range(3)}
    for (activation, seed), value in values.items():
        study.add_trial(optuna.trial.create_trial(
            value=value, state=optuna.trial.TrialState.COMPLETE,
            user_attrs={"status": "completed", "seed": seed, "final_val_acc": value,
                        "final_val_loss": 0.3, "overrides": [f"model.activation={activation}"]}))
    return study


# ------------------------------------------------------------------------------------------
# Issue 15 item 7: unknown metrics, missing paths, $CNNLAB_STORAGE


def test_an_unknown_metric_is_an_error_listing_the_metrics_the_runs_have(tmp_path, capsys):
    root = _runs(tmp_path)
    for metric in ("val_acc_typo", "swa_val_acc"):
        code, out, err = _run_cli(capsys, "compare", str(root), "--metric", metric)
        assert code == 2 and out == ""
        assert f"--metric {metric}: none of the finished runs" in err
        assert "the runs have: best_val_acc, val_acc, val_loss" in err


def test_an_unknown_metric_on_a_study_is_an_error(tmp_path, capsys):
    journal = tmp_path / "s.journal"
    _study(journal)
    code, _, err = _run_cli(capsys, "compare", "act", "--storage", str(journal), "--metric",
                            "swa_val_acc")
    assert code == 2 and "--metric swa_val_acc" in err and "val_acc, val_loss" in err


def test_a_missing_path_says_so_and_names_the_storage_read(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CNNLAB_STORAGE", raising=False)
    code, _, err = _run_cli(capsys, "compare", "runs/nonexistent")
    assert code == 2
    assert "runs/nonexistent is not an existing path" in err
    assert "runs/optuna.journal (from the default) does not exist" in err
    assert not (tmp_path / "runs").exists()  # reading never creates a store
    # With a store that exists but has no such study, both readings are named too.
    journal = tmp_path / "s.journal"
    _study(journal)
    code, _, err = _run_cli(capsys, "compare", "runs/nonexistent", "--storage", str(journal))
    assert code == 2
    assert f"no study 'runs/nonexistent' in storage {journal} (from --storage)" in err
    assert "runs/nonexistent is not an existing path either" in err and "act" in err


def test_cnnlab_storage_is_honoured_by_compare_report_and_worker(tmp_path, capsys, monkeypatch):
    from cnnlab.report.sources import load_input

    journal = tmp_path / "elsewhere.journal"
    _study(journal)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CNNLAB_STORAGE", str(journal))
    code, out, _ = _run_cli(capsys, "compare", "act", "--json")
    assert code == 0 and [r["n"] for r in _strict_loads(out)["rows"]] == [3, 3]
    loaded = load_input(["act"], None, None)
    assert loaded.kind == "study" and loaded.storage == str(journal)
    code, _, err = _run_cli(capsys, "worker", "--study", "nope")
    assert code == 2 and f"storage {journal} (from $CNNLAB_STORAGE)" in err
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------------
# Issue 15 item 8 and issue 20 item 11: degenerate statistics, NaN losses, strict JSON


def test_equal_paired_differences_at_three_seeds_give_no_verdict(tmp_path, capsys):
    root = _runs(tmp_path, gelu_shift=0.002)  # one more image right out of 500, every seed
    code, out, _ = _run_cli(capsys, "compare", str(root), "--json", *RELU_BASELINE)
    assert code == 0
    gelu = next(r for r in _strict_loads(out)["rows"] if "gelu" in r["label"])
    assert gelu["verdict"] == "not enough seeds to tell (n=3, smallest possible p=0.25)"
    assert gelu["p_value"] == pytest.approx(0.25) and gelu["p_method"] == "sign-flip"
    assert gelu["effect_size"] is None and "equal" in gelu["notes"]["effect_size"]
    code, table, _ = _run_cli(capsys, "compare", str(root), *RELU_BASELINE)
    assert "not enough seeds to tell" in table and "inf" not in table


def test_a_run_with_a_nan_validation_loss_is_diverged_for_every_metric(tmp_path, capsys):
    root = _runs(tmp_path, gelu_shift=0.02)
    # Seed 1 of gelu: the loss blew up but the accuracy is still a number (one class).
    summary_path = root / "gelu-1" / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary.update(final_val_loss=NAN, final_val_acc=0.1, best_val_acc=0.95)
    summary_path.write_text(json.dumps(summary))
    for metric in ("val_acc", "val_loss", "best_val_acc"):
        code, out, _ = _run_cli(capsys, "compare", str(root), "--metric", metric, "--json",
                                *RELU_BASELINE)
        assert code == 0
        gelu = next(r for r in _strict_loads(out)["rows"] if "gelu" in r["label"])
        assert (gelu["n"], gelu["diverged"], gelu["pairs"]) == (2, 1, 2), metric


def test_a_study_trial_with_a_nan_loss_is_diverged_and_json_stays_strict(tmp_path, capsys):
    journal = tmp_path / "s.journal"
    study = _study(journal)
    study.add_trial(optuna.trial.create_trial(
        value=0.1, state=optuna.trial.TrialState.COMPLETE,
        user_attrs={"status": "completed", "seed": 3, "final_val_acc": 0.1,
                    "final_val_loss": NAN, "overrides": ["model.activation=gelu"]}))
    code, out, _ = _run_cli(capsys, "compare", "act", "--storage", str(journal), "--json")
    assert code == 0
    gelu = next(r for r in _strict_loads(out)["rows"] if "gelu" in r["label"])
    assert (gelu["n"], gelu["diverged"]) == (3, 1)


def test_json_nulls_carry_a_reason(tmp_path, capsys):
    # One seed per combination: no interval, no test; every null says why.
    root = _runs(tmp_path, seeds=(0,))
    code, out, _ = _run_cli(capsys, "compare", str(root), "--json")
    assert code == 0
    rows = _strict_loads(out)["rows"]
    for row in rows:
        assert row["ci"] == [None, None] and "one finished run" in row["notes"]["ci"]
    assert rows[1]["p_value"] is None and "at least 2" in rows[1]["notes"]["p_value"]
    assert rows[1]["diff_ci"] == [None, None] and rows[1]["notes"]["diff_ci"]
    assert not math.isnan(rows[1]["diff"])


def test_an_accuracy_interval_is_cut_at_one(tmp_path, capsys):
    root = tmp_path / "runs"
    for seed, (relu, gelu) in enumerate([(0.99, 0.9), (0.999, 0.91), (0.95, 0.92)]):
        _write_run(root / f"relu-{seed}", "relu", seed,
                   {"final_val_acc": relu, "final_val_loss": 0.1})
        _write_run(root / f"gelu-{seed}", "gelu", seed,
                   {"final_val_acc": gelu, "final_val_loss": 0.1})
    code, out, _ = _run_cli(capsys, "compare", str(root), "--json", *RELU_BASELINE)
    relu = _strict_loads(out)["rows"][0]
    # mean 0.9797, std 0.0262: the t interval's upper end 1.045 is no accuracy.
    assert code == 0 and relu["ci"][1] == 1.0 and 0.9 < relu["ci"][0] < relu["mean"]
