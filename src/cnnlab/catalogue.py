"""Every registry by the name `cnnlab list` and error messages use for it."""

from __future__ import annotations

from cnnlab.registry import Registry


def catalogue() -> dict[str, Registry]:
    from cnnlab.components.activations import ACTIVATIONS
    from cnnlab.components.init import INITS
    from cnnlab.components.norms import NORMS
    from cnnlab.components.optimizers import OPTIMIZERS
    from cnnlab.components.schedules import SCHEDULES
    from cnnlab.data.sources import DATASETS
    from cnnlab.models import MODELS

    return {"models": MODELS, "datasets": DATASETS, "activations": ACTIVATIONS, "norms": NORMS,
            "inits": INITS, "optimizers": OPTIMIZERS, "schedules": SCHEDULES}
