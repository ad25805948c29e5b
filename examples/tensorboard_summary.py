"""What a run's TensorBoard events hold, read back with TensorBoard's own reader (the README's
"Export and TensorBoard" output): python examples/tensorboard_summary.py RUN_DIR"""

import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from cnnlab.rundir import RunDir

events = EventAccumulator(str(RunDir.open(sys.argv[1]).tensorboard_dir),
                          size_guidance={"scalars": 0, "histograms": 0})
events.Reload()
scalars, histograms = events.Tags()["scalars"], events.Tags()["histograms"]
print(len(scalars), "scalar tags,", len(histograms), "histogram tags")
print("curves:", [t for t in scalars if not t.startswith(("layers/", "diagnostics/"))])
print("val/acc:", [(e.step, round(e.value, 4)) for e in events.Scalars("val/acc")][-3:])
first_activation = next(t for t in scalars if t.startswith("layers/dead/"))
print(f"samples of {first_activation}:", len(events.Scalars(first_activation)))
