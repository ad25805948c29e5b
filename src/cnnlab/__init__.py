"""cnnlab: train CNNs with the techniques that decide whether training works, and measure which do.

The Python API mirrors the CLI:

    cfg = cnnlab.load_config("examples/quickstart.yaml", ["optim.lr=0.05"])
    summary = cnnlab.train(cfg)
"""

from __future__ import annotations

__version__ = "0.1.0"

from cnnlab.config import Config, load_config  # noqa: E402
from cnnlab.errors import ConfigError, DataError, UserError  # noqa: E402
from cnnlab.evaluate import evaluate_run  # noqa: E402
from cnnlab.predict import load_model, predict  # noqa: E402
from cnnlab.train import resume, train  # noqa: E402

__all__ = ["Config", "ConfigError", "DataError", "UserError", "__version__", "evaluate_run",
           "load_config", "load_model", "predict", "resume", "train"]
