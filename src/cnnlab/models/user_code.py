"""The user's own code as a model: a factory in a Python file (`model: {arch: file}`) and a
network given in Python (`model=`).

A model file is the user's code, run exactly as their own training script would run it: it is
imported by its path (never by a dotted name from a config), the import is announced on stderr,
and its SHA-256 goes into the run folder so that a resume or a study worker refuses a file that
changed since.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from cnnlab.errors import UserError, described

# Imported model files by path and content hash: one import per process for the same file, a
# new one when it changed.
_IMPORTED: dict[tuple[str, str], ModuleType] = {}


def _readable(path: Path) -> Path:
    if not path.is_file():
        raise UserError(f"model.path {path} does not exist; give the Python file that defines "
                        "the model factory (a relative path means the config file's folder)")
    return path


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(_readable(Path(path)).read_bytes()).hexdigest()


def source_record(path: str | Path) -> dict:
    """What the run folder keeps about a model file: its path and SHA-256."""
    return {"path": str(path), "sha256": file_sha256(path)}


def check_unchanged(recorded: dict, what: str) -> None:
    """Refuse to go on with a model file that is not the one `what` was made with."""
    path = Path(recorded["path"])
    if not path.is_file():
        raise UserError(f"{what} was made with model file {path}, which no longer exists; "
                        f"restore it (sha256 {recorded['sha256']}) to continue")
    now = file_sha256(path)
    if now != recorded["sha256"]:
        raise UserError(f"{what} was made with model file {path} at sha256 {recorded['sha256']}, "
                        f"but the file now has sha256 {now}; restore the original file to "
                        "continue, or start a new run (or study) for the changed code")


def study_model_source(config: dict) -> dict:
    """The study attribute that pins a study's model file (none for other models): every
    worker checks it before it trains a run of the study."""
    model = config.get("model")
    if isinstance(model, dict) and model.get("arch") == "file":
        return {"model_source": source_record(model["path"])}
    return {}


def import_model_file(path: str | Path) -> ModuleType:
    """Import the user's file by its path, once per content; say so on stderr."""
    path = _readable(Path(path))
    digest = file_sha256(path)
    key = (str(path.resolve()), digest)
    if key in _IMPORTED:
        return _IMPORTED[key]
    name = f"cnnlab_model_file_{hashlib.sha256(str(key).encode()).hexdigest()[:16]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"model.path {path} cannot be imported as Python; give a .py file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look a module up there
    print(f"model: importing {path} (sha256 {digest[:12]}...): your own code runs here",
          file=sys.stderr)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # noqa: BLE001 - the user's code may raise anything
        del sys.modules[name]
        raise UserError(f"importing model file {path} raised {described(error)}; fix the "
                        "file (run `python FILE` to see the traceback)") from None
    _IMPORTED[key] = module
    return module


def call_factory(factory: Callable[..., Any], in_channels: int, num_classes: int,
                 kwargs: dict, what: str) -> nn.Module:
    """factory(in_channels, num_classes, **kwargs), checked to be an nn.Module."""
    try:
        model = factory(in_channels, num_classes, **kwargs)
    except Exception as error:  # noqa: BLE001 - the user's code may raise anything
        extra = "".join(f", {k}={v!r}" for k, v in kwargs.items())
        raise UserError(f"{what} raised {described(error)} when called as "
                        f"(in_channels={in_channels}, num_classes={num_classes}{extra}); a "
                        "factory takes (in_channels, num_classes) and returns an nn.Module") \
            from None
    if not isinstance(model, nn.Module):
        raise UserError(f"{what} returned a {type(model).__name__}, not an nn.Module; a factory "
                        "takes (in_channels, num_classes) and returns the network")
    return model


def build_from_file(spec, in_channels: int, num_classes: int) -> nn.Module:
    """The network of a `model: {arch: file, path, factory, kwargs}` spec."""
    module = import_model_file(spec.path)
    factory = getattr(module, spec.factory, None)
    if not callable(factory):
        found = sorted(n for n, v in vars(module).items() if callable(v) and not
                       n.startswith("_") and getattr(v, "__module__", None) == module.__name__)
        listed = ", ".join(found) or "none"
        raise UserError(f"model file {spec.path} has no function or class '{spec.factory}' "
                        f"(model.factory); it defines: {listed}")
    return call_factory(factory, in_channels, num_classes, spec.kwargs,
                        f"model factory {spec.factory} in {spec.path}")


@dataclass(frozen=True)
class SuppliedModel:
    """A network given in Python as `model=`: an nn.Module, deep-copied for every build so that
    the caller's object is never changed, or a factory (in_channels, num_classes) -> nn.Module
    (a function or an nn.Module class), called for every build."""

    value: Any

    @property
    def is_factory(self) -> bool:
        return not isinstance(self.value, nn.Module)

    @property
    def name(self) -> str:
        target = self.value if self.is_factory else type(self.value)
        qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
        module = getattr(target, "__module__", None)
        return f"{module}.{qualname}" if module else qualname

    def build(self, in_channels: int, num_classes: int) -> nn.Module:
        if not self.is_factory:
            return copy.deepcopy(self.value)
        return call_factory(self.value, in_channels, num_classes, {},
                            f"model factory {self.name}")


def supplied_model(value: object) -> SuppliedModel | None:
    """Check a `model=` argument: None, an nn.Module or a factory."""
    if value is None or isinstance(value, SuppliedModel):
        return value
    if isinstance(value, nn.Module) or callable(value):
        return SuppliedModel(value)
    raise UserError(f"model= takes an nn.Module or a factory (in_channels, num_classes) -> "
                    f"nn.Module; received a {type(value).__name__}")
