"""The progress line on a terminal and the per-epoch lines everywhere."""

import io

from cnnlab.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_live_line_shows_epoch_step_loss_accuracy_lr_and_throughput(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    screen = Terminal()
    progress = Progress(epochs=3, steps_per_epoch=10, stream=screen)
    progress.step(2, 10, 0.5, 0.9, 0.01, 1234.4)
    line = screen.getvalue()
    assert line.startswith("\r") and "\n" not in line
    for part in ("epoch 2/3", "[" + "#" * 20 + "]", "step 10/10", "loss 0.5000", "acc 0.9000",
                 "lr 0.01", "1,234 img/s"):
        assert part in line, part
    progress.write("alarm: dead at body.0.act")  # clears the live line, then prints
    assert screen.getvalue().endswith("\ralarm: dead at body.0.act\n")


def test_away_from_a_terminal_only_whole_lines_are_written():
    log = io.StringIO()
    progress = Progress(epochs=2, steps_per_epoch=10, stream=log)
    progress.step(1, 5, 0.5, 0.9, 0.01, 100.0)
    assert log.getvalue() == ""
    progress.epoch({"epoch": 1, "train_loss": 0.5, "train_acc": 0.9, "val_loss": 0.4,
                    "val_acc": 0.95, "val_top5": 1.0, "lr": 0.01, "images_per_s": 2500.0,
                    "seconds": 1.25})
    assert log.getvalue() == ("epoch 1/2  train_loss 0.5000  train_acc 0.9000  val_loss 0.4000  "
                              "val_acc 0.9500  val_top5 1.0000  lr 0.01  2,500 img/s  1.2s\n")
    quiet = io.StringIO()
    Progress(epochs=2, steps_per_epoch=10, enabled=False, stream=quiet).write("hidden")
    assert quiet.getvalue() == ""
