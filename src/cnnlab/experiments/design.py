"""What an experiment runs: factors and their values, combinations, seeds, labels, run folders,
and the search space of a hyperparameter search."""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, TypeAdapter, ValidationError, model_validator

from cnnlab.config import absolute_paths, apply_override, load_config, read_config_file
from cnnlab.errors import ConfigError, UserError
from cnnlab.models.user_code import SuppliedModel
from cnnlab.options import Options


@dataclass(frozen=True)
class Factor:
    key: str
    values: tuple[str, ...]  # YAML texts as the user wrote them: also the labels
    baseline: str


def base_config(config_path: str | Path | dict, extra: list[str],
                supplied: SuppliedModel | None = None) -> dict:
    """The user's config (a file, or a dict in Python) with -o applied, unresolved: a factor
    that switches a component (optim name=adam) then gets that component's own defaults, not
    the ones of the config's choice. With a network given in Python, the model section says
    `arch: python` and its name."""
    raw = copy.deepcopy(config_path) if isinstance(config_path, dict) else \
        read_config_file(config_path)
    for item in extra:
        apply_override(raw, item)
    if supplied is not None:
        model = raw.get("model")
        keep = model if isinstance(model, dict) and model.get("arch") == "python" else {}
        raw["model"] = {**keep, "arch": "python", "name": supplied.name}
    load_config(raw)  # every problem reported now, before a study exists
    return absolute_paths(raw, Path.cwd())  # -o paths mean the folder the command ran in


def split_values(text: str) -> list[str]:
    """Split `V1,V2,...` on top-level commas, so `{name: normal, std: 0.01},zeros` is two."""
    parts, depth, quote, current = [], 0, None, []
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [p for p in parts if p]


def parse_factors(specs: list[str], baselines: list[str]) -> list[Factor]:
    factors, seen = [], set()
    chosen = {}
    for item in baselines:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--baseline '{item}' is not KEY=VALUE; e.g. --baseline "
                            "model.activation=relu")
        chosen[key.strip()] = value.strip()
    for spec in specs:
        key, sep, text = spec.partition("=")
        key = key.strip()
        values = split_values(text) if sep else []
        if not key or len(values) < 2:
            raise UserError(f"--vary '{spec}' needs a key and at least two values, e.g. "
                            "--vary model.activation=relu,gelu")
        if key in seen:
            raise UserError(f"--vary names {key} twice; give all its values in one --vary")
        if len(set(values)) != len(values):
            raise UserError(f"--vary {key} repeats a value: {values}")
        seen.add(key)
        baseline = chosen.pop(key, values[0])
        if baseline not in values:
            raise UserError(f"--baseline {key}={baseline} is not among the values varied "
                            f"({', '.join(values)})")
        factors.append(Factor(key, tuple(values), baseline))
    if chosen:
        raise UserError(f"--baseline names {', '.join(chosen)}, which no --vary varies")
    return factors


def combinations(factors: list[Factor]) -> list[dict[str, str]]:
    return [dict(zip([f.key for f in factors], values))
            for values in itertools.product(*[f.values for f in factors])]


def label(combo: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in combo.items()) or "base"


def overrides(combo: dict[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in combo.items()]


def folder_name(text: str) -> str:
    """A label as a folder name: readable, and safe on every file system."""
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_")[:120] or "base"


def run_dir(root: Path, study: str, combo_label: str, seed: int) -> Path:
    return root / folder_name(study) / folder_name(combo_label) / f"seed{seed}"


def validate_combinations(base: dict, factors: list[Factor]) -> None:
    """Every combination must be a valid config before a single run starts."""
    problems = []
    for combo in combinations(factors):
        try:
            load_config(base, overrides(combo))
        except ConfigError as error:
            problems += [f"with {label(combo)}: {p}" for p in error.problems]
        except UserError as error:
            problems.append(f"with {label(combo)}: {error}")
    if problems:
        raise ConfigError(problems)


# ------------------------------------------------------------------------- search spaces


class FloatRange(Options):
    low: float
    high: float
    log: bool = False
    step: float | None = None
    type: Literal["float"] = "float"

    @model_validator(mode="after")
    def _ordered(self):
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class IntRange(Options):
    low: int
    high: int
    log: bool = False
    step: int = 1
    type: Literal["int"]


class Choices(Options):
    choices: list[Any] = Field(min_length=1)


SpaceEntry = IntRange | FloatRange | Choices


def load_space(path: str | Path) -> dict:
    """The search space file as plain data, checked (see `load_space_dict`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--space {path} does not exist; give a YAML file mapping config keys "
                        "to ranges ({low, high, log}) or choices ({choices: [...]})")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict) or not raw:
        raise UserError(f"--space {path} must map config keys to ranges or choices, e.g. "
                        "optim.lr: {low: 1.0e-3, high: 1.0, log: true}")
    load_space_dict(raw, str(path))
    return raw


def load_space_dict(raw: dict, where: str = "the search space") -> dict[str, SpaceEntry]:
    adapter = TypeAdapter(SpaceEntry)
    space, problems = {}, []
    for key, value in raw.items():
        if isinstance(value, dict) and value.get("type") == "int":
            value = dict(value)
        elif isinstance(value, dict) and "choices" not in value:
            value = {**value, "type": value.get("type", "float")}
        try:
            space[key] = adapter.validate_python(value)
        except ValidationError as error:
            detail = "; ".join(e["msg"] for e in error.errors()[:2])
            problems.append(f"{key}: received {value!r}; expected {{low, high[, log, step, "
                            f"type: int]}} or {{choices: [...]}} ({detail})")
    if problems:
        raise ConfigError([f"--space {where}: {p}" for p in problems])
    return space


def choice_text(value: Any) -> Any:
    """Optuna choices must be scalars; mappings and lists travel as their YAML text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip()
