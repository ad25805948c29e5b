"""Every registry by the name `cnnlab list` and error messages use for it.

`cnnlab list` answers from `catalogue_table.py`, a copy of the registries' names, descriptions
and keys written by `python -m cnnlab.catalogue`, because reading the registries themselves
imports torch (2-3 s). The registries stay the single source: a test fails when the copy differs.
"""

from __future__ import annotations

import pprint
from pathlib import Path

from cnnlab.registry import Registry

TABLE_FILE = Path(__file__).with_name("catalogue_table.py")
# model.arch also takes networks cnnlab did not write (models/foreign.py); no registry lists
# them, so `cnnlab list models` adds this line.
FOREIGN_MODELS = ("model.arch also takes torchvision.NAME (any torchvision classification model), "
                  "timm.NAME (pip install 'cnnlab[timm]') and file (a factory in your own "
                  "Python file: path, factory, kwargs); see README, \"Your own network\"")


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


def entry_keys(entry) -> list[str]:
    """The config keys an entry takes besides its name."""
    if entry.options is None:
        return []
    return [k for k in entry.options.model_fields if k not in ("name", "arch")]


def table_from_registries() -> dict[str, list[dict]]:
    return {kind: [{"name": e.name, "description": e.description, "keys": entry_keys(e)}
                   for e in registry] for kind, registry in catalogue().items()}


def write_table() -> None:
    table = pprint.pformat(table_from_registries(), width=100, sort_dicts=False, compact=True)
    TABLE_FILE.write_text(
        '"""Written by `python -m cnnlab.catalogue` from the registries; do not edit."""\n\n'
        f"TABLE = {table}\n")


if __name__ == "__main__":
    write_table()
    print(f"wrote {TABLE_FILE}")
