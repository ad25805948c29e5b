"""cnnlab: train CNNs with the techniques that decide whether training works, and measure which do.

The Python API mirrors the CLI:

    cfg = cnnlab.load_config("examples/quickstart.yaml", ["optim.lr=0.05"])
    summary = cnnlab.train(cfg)
    summary = cnnlab.train(cfg, model=my_factory)  # your own network: (in_channels, classes)
"""

from __future__ import annotations

import sys
import types
from importlib import import_module

from cnnlab.errors import ConfigError, DataError, UserError

__version__ = "0.1.0"

# Imported on first use, so `cnnlab --help` and `cnnlab list` answer without importing torch.
_LAZY = {"Config": "cnnlab.config", "load_config": "cnnlab.config",
         "evaluate_run": "cnnlab.evaluate", "doctor": "cnnlab.doctor", "export": "cnnlab.exporting",
         "load_model": "cnnlab.predict",
         "predict": "cnnlab.predict", "resume": "cnnlab.train", "train": "cnnlab.train",
         # The functions behind `cnnlab inspect`, `lr-find` and `ablate`; each takes model=.
         # None of these names is a cnnlab submodule (the modules are propagation, lr_finder
         # and experiments.ablate), so importing those never rebinds them.
         "inspect": "cnnlab.propagation", "lr_find": "cnnlab.lr_finder",
         "ablate": "cnnlab.experiments.ablate"}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'cnnlab' has no attribute '{name}'")


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: object) -> None:
        # Importing the submodule cnnlab.train (or cnnlab.predict) would rebind `cnnlab.train`,
        # the function users call, to that module; the function stays (as when it was imported
        # eagerly).
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["Config", "ConfigError", "DataError", "UserError", "__version__", "ablate", "doctor",
           "evaluate_run", "export", "inspect", "load_config", "load_model", "lr_find", "predict",
           "resume", "train"]
