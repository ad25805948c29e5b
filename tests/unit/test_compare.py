"""cnnlab.experiments.compare on run folders written by hand (no training): which summary key a
metric is read from, the direction behind "better", unknown metrics and diverged runs."""

import json

import pytest
import yaml

from cnnlab.errors import UserError
from cnnlab.experiments.compare import analyse, apply_baseline, from_runs

SEEDS = range(5)
# Seed-to-seed spread, so that paired differences are not all equal (a paired t-test needs that).
JITTER = [0.000, 0.004, -0.003, 0.006, 0.001]


def _write_run(folder, optimizer: str, seed: int, summary: dict, status="completed") -> None:
    folder.mkdir(parents=True)
    config = {"name": "t", "seed": seed, "optim": {"name": optimizer}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "summary.json").write_text(json.dumps({"status": status, "seed": seed,
                                                     **summary}))
    records = [{"epoch": 1, "val_acc": 0.5, "val_loss": 1.0},
               {"epoch": 2, "val_acc": summary.get("final_val_acc"),
                "val_loss": summary.get("final_val_loss")}]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def _summary(acc: float, loss: float) -> dict:
    return {"final_val_acc": acc, "final_val_loss": loss, "final_train_loss": loss / 2,
            "best_val_acc": acc + 0.01, "best_epoch": 2, "test_acc": acc - 0.01,
            "final_ema_val_acc": acc + 0.002, "images_per_s": 1000.0}


def _runs(tmp_path, adam_acc_shift=0.05, adam_loss_shift=-0.1, adam_summary=None):
    """sgd (the baseline) and adam over five seeds; adam's accuracy and loss shifted."""
    root = tmp_path / "runs"
    for seed in SEEDS:
        acc, loss = 0.8 + JITTER[seed], 0.5 + JITTER[seed]
        _write_run(root / f"sgd-{seed}", "sgd", seed, _summary(acc, loss))
        summary = adam_summary(seed) if adam_summary else \
            _summary(acc + adam_acc_shift + JITTER[-seed - 1] / 4,
                     loss + adam_loss_shift + JITTER[-seed - 1] / 4)
        _write_run(root / f"adam-{seed}", "adam", seed, summary)
    return str(root)


def _analysis(root: str, metric: str) -> dict:
    results = from_runs([root], metric)
    apply_baseline(results, ["optim.name=sgd"])
    return analyse(results)


@pytest.mark.parametrize("metric, key, offset", [
    ("val_acc", "final_val_acc", 0.0), ("final_val_acc", "final_val_acc", 0.0),
    ("best_val_acc", "best_val_acc", 0.01), ("test_acc", "test_acc", -0.01),
    ("ema_val_acc", "final_ema_val_acc", 0.002), ("images_per_s", "images_per_s", None)])
def test_a_metric_is_read_from_its_summary_key(tmp_path, metric, key, offset):
    results = from_runs([_runs(tmp_path)], metric)
    assert results.factors == ["optim.name"]
    values = results.cells[("sgd",)]
    if offset is None:
        assert values == {seed: 1000.0 for seed in SEEDS}
    else:
        assert values == {seed: pytest.approx(0.8 + JITTER[seed] + offset) for seed in SEEDS}


def test_the_learning_curve_is_the_per_epoch_metric(tmp_path):
    results = from_runs([_runs(tmp_path)], "val_acc")
    assert results.curves[("sgd",)][1] == [0.5, pytest.approx(0.804)]


@pytest.mark.parametrize("metric, words", [("val_acc", "higher is better"),
                                           ("val_loss", "lower is better"),
                                           ("train_loss", "lower is better")])
def test_better_follows_the_direction_of_the_metric(tmp_path, metric, words):
    # adam has the higher accuracy and the lower loss: better for both metrics.
    analysis = _analysis(_runs(tmp_path), metric)
    assert analysis["direction"] == words
    rows = {row["label"]: row for row in analysis["rows"]}
    assert rows["optim.name=sgd"]["verdict"] == "baseline"
    assert rows["optim.name=adam"]["verdict"] == "better"


def test_a_higher_loss_is_worse(tmp_path):
    analysis = _analysis(_runs(tmp_path, adam_acc_shift=-0.05, adam_loss_shift=0.1), "val_loss")
    assert analysis["rows"][1]["verdict"] == "worse"


def test_an_unknown_metric_lists_the_metrics_every_run_has(tmp_path):
    with pytest.raises(UserError) as error:
        from_runs([_runs(tmp_path)], "val_accuracy")
    message = str(error.value)
    assert "--metric val_accuracy: none of the finished runs" in message
    assert ("the runs have: best_val_acc, ema_val_acc, test_acc, train_loss, val_acc, val_loss;"
            in message)


def test_a_metric_only_some_runs_have_says_how_many(tmp_path):
    def adam_summary(seed):
        summary = _summary(0.85, 0.4)
        del summary["final_ema_val_acc"]
        return summary
    with pytest.raises(UserError, match="5 of the 10 finished runs"):
        from_runs([_runs(tmp_path, adam_summary=adam_summary)], "ema_val_acc")


def test_diverged_runs_are_counted_and_left_out_of_the_statistics(tmp_path):
    def adam_summary(seed):
        # Seeds 0 and 1 leave a NaN final loss (status still completed), seed 2 says diverged.
        summary = _summary(0.85 + JITTER[seed], 0.4)
        if seed < 2:
            summary["final_val_loss"] = float("nan")
        return summary
    root = _runs(tmp_path, adam_summary=adam_summary)
    (tmp_path / "runs" / "adam-2" / "summary.json").write_text(json.dumps(
        {"status": "diverged", "seed": 2, "diverged_reason": "a non-finite loss"}))
    results = from_runs([root], "val_acc")
    assert results.cells[("adam",)] == {0: None, 1: None, 2: None,
                                        3: pytest.approx(0.856), 4: pytest.approx(0.851)}
    rows = {row["label"]: row for row in analyse(results)["rows"]}
    assert rows["optim.name=adam"]["n"] == 2
    assert rows["optim.name=adam"]["diverged"] == 3
    assert rows["optim.name=sgd"]["diverged"] == 0


def test_a_run_still_running_is_not_counted(tmp_path):
    root = _runs(tmp_path)
    (tmp_path / "runs" / "adam-4" / "summary.json").write_text(json.dumps(
        {"status": "running", "seed": 4}))
    results = from_runs([root], "val_acc")
    assert sorted(results.cells[("adam",)]) == [0, 1, 2, 3]
