"""bench/recipe_vs_airbench.py: airbench's printed tables and cnnlab run folders in, the comparison
table's numbers out. The airbench logs are what its print code writes (columns padded to their
header's width, the run number in a run's first row, an `eval` row with the TTA accuracy, and for
airbench94_muon a warm-up run first); the run folders have the shapes cnnlab writes."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "recipe_vs_airbench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("recipe_vs_airbench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being made
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


# airbench94.py's columns; two runs of 3 epochs (the real one has 10), TTA accuracy 0.925 / 0.935.
AIRBENCH94_LOG = """\
------------------------------------------------------------------------------------------------------
|  run     |  epoch  |  train_loss  |  train_acc  |  val_acc  |  tta_val_acc  |  total_time_seconds  |
------------------------------------------------------------------------------------------------------
|       0  |      0  |      0.9000  |     0.6000  |   0.7000  |               |              0.5000  |
|          |      1  |      0.8000  |     0.8000  |   0.8500  |               |              1.0000  |
|          |      2  |      0.7000  |     0.9000  |   0.9200  |               |              1.5000  |
|          |   eval  |      0.7000  |     0.9000  |   0.9200  |       0.9250  |              1.6000  |
------------------------------------------------------------------------------------------------------
|       1  |      0  |      0.9000  |     0.6000  |   0.7200  |               |              0.6000  |
|          |      1  |      0.8000  |     0.8000  |   0.8600  |               |              1.2000  |
|          |      2  |      0.7000  |     0.9000  |   0.9300  |               |              1.8000  |
|          |   eval  |      0.7000  |     0.9000  |   0.9300  |       0.9350  |              2.0000  |
------------------------------------------------------------------------------------------------------
Mean: 0.9300    Std: 0.0071
/tmp/airbench/logs/0b7c/log.pt
"""

# airbench94_muon.py's columns: the compile warm-up run (random labels) first, then two runs.
AIRBENCH94_MUON_LOG = """\
/usr/lib/python3/site-packages/torch/_inductor/compile_fx.py:150: UserWarning: TensorFloat32
---------------------------------------------------------------------------------
|  run     |  epoch  |  train_acc  |  val_acc  |  tta_val_acc  |  time_seconds  |
---------------------------------------------------------------------------------
|  warmup  |      0  |     0.1000  |   0.1000  |               |       30.0000  |
|          |      1  |     0.1000  |   0.1000  |               |       31.0000  |
|          |   eval  |     0.1000  |   0.1000  |       0.1000  |       31.5000  |
---------------------------------------------------------------------------------
|       0  |      0  |     0.8000  |   0.8000  |               |        0.4000  |
|          |      1  |     0.9000  |   0.9300  |               |        0.8000  |
|          |   eval  |     0.9000  |   0.9300  |       0.9400  |        0.9000  |
---------------------------------------------------------------------------------
|       1  |      0  |     0.8000  |   0.8200  |               |        0.5000  |
|          |      1  |     0.9000  |   0.9350  |               |        1.0000  |
|          |   eval  |     0.9000  |   0.9350  |       0.9450  |        1.1000  |
---------------------------------------------------------------------------------
Mean: 0.9425    Std: 0.0035
"""


def write_run(folder: Path, train_seconds: list[float], val_acc: list[float],
              status: str = "completed") -> None:
    """A cnnlab run folder: metrics.jsonl (one record per epoch) and summary.json."""
    folder.mkdir(parents=True)
    records, elapsed = [], 0.0
    for epoch, (seconds, accuracy) in enumerate(zip(train_seconds, val_acc), start=1):
        elapsed += seconds + 0.5
        records.append({"epoch": epoch, "step": 49 * epoch, "train_loss": 1.0, "train_acc": 0.9,
                        "val_loss": 0.5, "val_acc": accuracy, "val_top5": 0.99, "lr": 0.1,
                        "images_per_s": 50000 / seconds, "train_seconds": seconds,
                        "seconds": elapsed})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    summary = {"name": "cifar10-airbench", "status": status, "seed": 0,
               "epochs": len(records), "epochs_completed": len(records),
               "final_val_acc": val_acc[-1], "best_val_acc": max(val_acc), "seconds": elapsed}
    (folder / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def bench_output(tmp_path):
    logs, runs = tmp_path / "logs", tmp_path / "runs"
    logs.mkdir()
    (logs / "airbench94.txt").write_text(AIRBENCH94_LOG)
    (logs / "airbench94_muon.txt").write_text(AIRBENCH94_MUON_LOG)
    # First epochs hold torch.compile's compiling (20 s, 21 s).
    write_run(runs / "airbench" / "seed-0", [20.0, 1.0, 1.2], [0.80, 0.90, 0.93])
    write_run(runs / "airbench" / "seed-1", [21.0, 1.1, 0.9], [0.82, 0.91, 0.94])
    write_run(runs / "airbench" / "seed-2", [22.0], [0.5], status="running")  # cut off
    write_run(runs / "airbench_muon" / "seed-0", [25.0, 1.0], [0.85, 0.93])
    return logs, runs


def test_airbench94_log_gives_each_runs_tta_accuracy_time_and_epoch_curve(bench):
    runs = bench.parse_airbench_log(AIRBENCH94_LOG)
    assert [run.name for run in runs] == ["0", "1"]
    assert [run.accuracy for run in runs] == [0.925, 0.935]
    assert [run.seconds for run in runs] == [1.6, 2.0]
    # per-epoch accuracies without TTA, then the final TTA point at the final time
    assert runs[0].curve == [(0.5, 0.70), (1.0, 0.85), (1.5, 0.92), (1.6, 0.925)]


def test_airbench94_muon_log_leaves_out_the_compile_warmup_run(bench):
    runs = bench.parse_airbench_log(AIRBENCH94_MUON_LOG)
    assert [run.name for run in runs] == ["0", "1"]
    assert [run.accuracy for run in runs] == [0.94, 0.945]
    assert [run.seconds for run in runs] == [0.9, 1.1]


def test_a_run_cut_short_by_a_timeout_is_left_out(bench):
    cut = AIRBENCH94_LOG.split("|       1  |")[0] + "|       1  |      0  |      0.9000  |" \
        "     0.6000  |   0.7200  |               |              0.6000  |\n"
    assert [run.name for run in bench.parse_airbench_log(cut)] == ["0"]


def test_cnnlab_run_counts_its_first_epoch_as_the_median_of_the_others(bench, bench_output):
    _, runs = bench_output
    run = bench.read_cnnlab_run(runs / "airbench" / "seed-0")
    assert run.seconds == pytest.approx(1.1 + 1.0 + 1.2)
    assert run.seconds_with_compile == pytest.approx(22.2)
    assert [seconds for seconds, _ in run.curve] == pytest.approx([1.1, 2.1, 3.3])
    assert [accuracy for _, accuracy in run.curve] == [0.80, 0.90, 0.93]
    assert run.accuracy == 0.93
    assert bench.read_cnnlab_run(runs / "airbench" / "seed-2") is None  # not completed


def test_table_numbers(bench, bench_output):
    (peer94, ours94), (peer_muon, ours_muon) = bench.build_pairs(*bench_output)
    # airbench94: mean TTA accuracy 0.93 < 94%, so the target is airbench's own mean, which its
    # epoch means (0.925 after the last epoch) reach only at the final TTA point, 1.8 s.
    assert peer94.mean_accuracy == pytest.approx(0.93)
    assert peer94.target == pytest.approx(0.93)
    assert peer94.time_to_target == pytest.approx(1.8)
    assert peer94.mean_seconds == pytest.approx(1.8)
    # cnnlab: two completed seeds (the cut one is left out); epoch means reach 0.935 at
    # (3.3 + 3.0) / 2 = 3.15 s with the compile excluded.
    assert len(ours94.runs) == 2
    assert ours94.mean_accuracy == pytest.approx(0.935)
    assert ours94.time_to_target == pytest.approx(3.15)
    assert ours94.mean_seconds == pytest.approx(3.15)
    assert ours94.mean_seconds_with_compile == pytest.approx((22.2 + 23.0) / 2)
    # airbench94_muon: mean 0.9425 >= 94%, so the target is 94%, reached at its final point.
    assert peer_muon.target == 0.94
    assert peer_muon.time_to_target == pytest.approx(1.0)
    assert ours_muon.time_to_target is None  # 0.93 < 0.94

    lines = bench.table([(peer94, ours94), (peer_muon, ours_muon)])
    ours_line = next(line for line in lines if "cifar10_airbench.yaml" in line)
    # 95% t interval of (0.93, 0.94): 0.935 +- t(1, 0.975) 12.706 * 0.00707 / sqrt(2)
    half = 12.7062 * math.sqrt(0.00005) / math.sqrt(2)
    assert f"0.9350 ({0.935 - half:.4f} to {0.935 + half:.4f})" in ours_line
    assert "3.15 / 22.60" in ours_line
    assert "1.75x" in ours_line  # 3.15 / 1.8, time to target
    muon_line = next(line for line in lines if "cifar10_airbench_muon.yaml" in line)
    assert "one run, no interval" in muon_line and "not reached" in muon_line

    said = bench.verdicts([(peer94, ours94), (peer_muon, ours_muon)])
    assert "1.75x" in said[0] and "missed" in said[0]
    assert "never reached 0.9400" in said[1]


def test_missing_logs_and_runs_print_as_no_runs(bench, tmp_path, capsys):
    (tmp_path / "logs").mkdir()
    bench.main([str(tmp_path / "logs"), str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert out.count("| 0 | no runs |") == 4
    assert "not comparable" in out
