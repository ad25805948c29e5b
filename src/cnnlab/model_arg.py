"""The `model=` argument of the Python API (`cnnlab.train(cfg, model=...)` and the rest): check
it, and record in the config which network it is, so the run folder says what was trained."""

from __future__ import annotations

import sys

from cnnlab.config import Config
from cnnlab.errors import UserError
from cnnlab.models.foreign import PythonModel
from cnnlab.models.user_code import SuppliedModel, supplied_model


def with_model(cfg: Config, model: object) -> tuple[Config, SuppliedModel | None]:
    """`cfg` with `model: {arch: python, name: ...}` when a network is given, and the network.

    The config's own model.init/activation/norm apply when it already says `arch: python`; a
    config written for another architecture has its model section replaced, with a note."""
    supplied = supplied_model(model)
    if supplied is None:
        return cfg, None
    spec = cfg.model
    if isinstance(spec, PythonModel):
        spec = spec.model_copy(update={"name": supplied.name})
    else:
        if "model" in cfg.model_fields_set:
            print(f"model=: {supplied.name} replaces the config's model (arch {spec.arch}); to "
                  "set its init, activation or norm write model: {arch: python, init: ...}",
                  file=sys.stderr)
        spec = PythonModel(name=supplied.name)
    return cfg.model_copy(update={"model": spec}), supplied


def for_run(cfg: Config, model: object, what: str) -> SuppliedModel | None:
    """The network given again for an existing run (resume, evaluate, predict)."""
    supplied = supplied_model(model)
    if supplied is not None and not isinstance(cfg.model, PythonModel):
        raise UserError(f"{what} was trained with model.arch {cfg.model.arch}, which cnnlab "
                        "builds itself; leave out model=, which is for runs trained on a "
                        "network given in Python")
    return supplied


def require_factory(supplied: SuppliedModel | None, what: str) -> None:
    """Refuse an nn.Module instance where several fresh networks are built."""
    if supplied is not None and not supplied.is_factory:
        raise UserError(f"{what} builds a fresh network for every run, so model= must be a "
                        f"factory (in_channels, num_classes) -> nn.Module, not the instance "
                        f"{supplied.name}; pass the class itself or e.g. "
                        "model=lambda c, n: MyNet(c, n)")
