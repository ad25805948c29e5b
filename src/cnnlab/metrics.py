"""Names of the per-epoch metrics (the keys of a metrics.jsonl line) that settings can watch."""

from typing import Literal

# ema_* exist only when train.ema is set; val_top5 only with 10 or more classes.
MetricName = Literal["val_loss", "val_acc", "val_top5", "train_loss", "train_acc",
                     "ema_val_loss", "ema_val_acc", "ema_val_top5"]
