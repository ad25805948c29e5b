"""Output file arguments are checked before any work (issue 15, items 6 and 12)."""

import pytest

from cnnlab.cli import main
from tests.conftest import ROOT

QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")


@pytest.mark.parametrize("command", [["inspect", QUICKSTART], ["schedule", QUICKSTART],
                                     ["lr-find", QUICKSTART]])
def test_a_plot_with_an_unknown_extension_is_one_sentence_and_exit_2(command, tmp_path, capsys):
    assert main([*command, "--plot", str(tmp_path / "out.jpgx")]) == 2
    err = capsys.readouterr().err
    assert "'.jpgx'" in err and ".png" in err and ".svg" in err and "Traceback" not in err


@pytest.mark.parametrize("command", [["inspect", QUICKSTART], ["schedule", QUICKSTART],
                                     ["lr-find", QUICKSTART]])
def test_a_plot_in_a_missing_folder_is_one_sentence_and_exit_2(command, tmp_path, capsys):
    assert main([*command, "--plot", str(tmp_path / "nowhere" / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "nowhere" in err


def test_diagnose_plot_folder_that_is_a_file_is_refused(tmp_path, capsys):
    file = tmp_path / "plots"
    file.write_text("")
    assert main(["diagnose", str(tmp_path), "--plot", str(file)]) == 2
    assert "is a file" in capsys.readouterr().err


def test_lr_find_apply_into_a_missing_folder_is_refused(tmp_path, capsys):
    assert main(["lr-find", QUICKSTART, "--apply", str(tmp_path / "nowhere" / "a.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_train_on_a_directory_says_a_config_file_is_expected(capsys):
    assert main(["train", str(ROOT / "examples")]) == 2
    err = capsys.readouterr().err
    assert "is a directory" in err and "config file" in err


def test_report_takes_its_output_as_out(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing-run"), "--out", str(tmp_path / "r.xyz")]) == 2
    assert ".html" in capsys.readouterr().err


def test_report_dash_o_points_to_out(tmp_path, capsys):
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "report.html")]) == 2
    assert "--out " + str(tmp_path / "report.html") in capsys.readouterr().err


def test_search_best_into_a_missing_folder_is_refused_before_any_trial(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("optim.lr: {low: 0.01, high: 0.1, log: true}\n")
    assert main(["search", QUICKSTART, "--space", str(space), "--trials", "1", "--storage",
                 str(tmp_path / "s.journal"), "--best", str(tmp_path / "nowhere" / "b.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "s.journal").exists()  # no study was started
