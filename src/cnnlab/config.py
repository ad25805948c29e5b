"""The typed config: YAML plus `-o a.b=c` overrides, validated all at once before anything runs.

Every problem is reported together, each with its key path, the value received and what is
accepted. Names (models, datasets, activations, ...) are checked against cnnlab's own
registries; nothing in a config is ever imported or executed.
"""

from __future__ import annotations

import copy
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from cnnlab.components.optimizers import OptimizerSpec
from cnnlab.components.schedules import ScheduleSpec
from cnnlab.data.sources import DATASETS
from cnnlab.errors import ConfigError, UserError, did_you_mean
from cnnlab.metric_names import MetricName, averaged_by
from cnnlab.models import ModelSpec
from cnnlab.models.foreign import FOREIGN_ARCHS, foreign_spec_class
from cnnlab.options import NOT_A_NUMBER, Options, member_tag

DatasetName = Literal[tuple(DATASETS.names())]  # type: ignore[valid-type]


class AugmentConfig(Options):
    crop_padding: int = Field(0, ge=0, description="random crop after padding this many pixels")
    crop_mode: Literal["zeros", "reflect"] = "zeros"
    flip: Literal[False, True, "alternate"] = Field(
        False, description="horizontal flip: true mirrors a random half of every batch; "
        "alternate mirrors each image at random in the first epoch and then every other epoch "
        "(airbench), so two consecutive epochs show it both ways")
    cutout: int = Field(0, ge=0, description="side of a random square set to 0 (DeVries 2017)")


class NormalizeStats(Options):
    mean: list[float]
    std: list[float]

    @field_validator("std")
    @classmethod
    def _positive(cls, std: list[float]) -> list[float]:
        if any(s <= 0 for s in std):
            raise ValueError(f"every std must be positive, received {std}")
        return std


class SyntheticConfig(Options):
    num_classes: int = Field(4, ge=2)
    image_size: int = Field(16, ge=4)
    channels: Literal[1, 3] = 3
    train_size: int = Field(512, ge=1)
    test_size: int = Field(128, ge=1)
    noise: float = Field(0.15, ge=0.0)
    seed: int = 0


class DataConfig(Options):
    dataset: DatasetName = "digits"
    root: str | None = None
    download: bool = False
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int | None = Field(None, ge=1, description="default: 2 x batch_size")
    val_split: float = Field(0.1, ge=0.0, le=0.9, description="0: validate on the test split")
    test_split: float = Field(0.2, gt=0.0, le=0.9, description="for data without a test split")
    split_seed: int = Field(0, description="fixed across run seeds, so all runs share splits")
    train_subset: int | None = Field(None, ge=1, description="train on this many images only")
    num_classes: int | None = Field(None, ge=2)
    image_size: int | tuple[int, int] | None = None
    channels: Literal["auto", 1, 3] = "auto"
    normalize: Literal["auto", "none"] | NormalizeStats = "auto"
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    in_memory: Literal["auto"] | bool = "auto"
    workers: int | None = Field(None, ge=0)
    cache_dir: str | None = None
    archive_max_gb: float = Field(200.0, gt=0.0, description="an archive in data.root may "
                                  "expand to at most this many GB (10^9 bytes)")
    archive_max_files: int = Field(5_000_000, ge=1, description="... and hold at most this "
                                   "many members")
    layout: Literal["auto", "nhwc", "nchw"] = "auto"
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    description: str | None = Field(None, description="what data= was, for dataset python "
                                    "(written by cnnlab)")

    @field_validator("image_size")
    @classmethod
    def _image_size(cls, size):
        sides = [size] if isinstance(size, int) else list(size or [])
        if any(side < 4 for side in sides):
            raise ValueError("every side must be at least 4 pixels, the smallest a "
                             "convolutional network takes")
        return size

    @model_validator(mode="after")
    def _root_when_needed(self):
        if DATASETS.get(self.dataset).info.needs_root and not self.root:
            raise ValueError(f"data.root is required for dataset {self.dataset}: give the path of "
                             "the file or folder that holds it")
        return self


class EmaConfig(Options):
    decay: float = Field(0.999, ge=0.0, le=1.0)
    warmup_steps: int = Field(0, ge=0, description="decay ramps up from 0 over these steps")
    every: int = Field(1, ge=1, description="update every this many optimizer steps")


class LookaheadConfig(Options):
    every: int = Field(5, ge=1, description="sync the slow weights every this many optimizer "
                       "steps (Zhang et al.'s k)")
    decay: float = Field(0.5, ge=0.0, lt=1.0, description="slow <- decay*slow + (1-decay)*fast, "
                         "then fast <- slow; Zhang et al.'s alpha is 1 - decay")
    ramp: Literal["none", "cubic"] = Field("none", description="cubic: decay x (step / "
                                           "total_steps)^3, airbench94's (with decay 0.95^5 = "
                                           "0.774, every 5)")


class EarlyStoppingConfig(Options):
    metric: MetricName = "val_loss"
    mode: Literal["min", "max"] = "min"
    patience: int = Field(5, ge=0, description="epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0.0)
    restore_best: bool = True


class SwaConfig(Options):
    start_epoch: int | None = Field(None, ge=1, description="first epoch (1-based) whose final "
                                    "weights enter the average; default: after 75% of the epochs")
    lr: float | None = Field(None, gt=0.0, description="constant LR from start_epoch on; null "
                             "keeps the schedule's")
    anneal_epochs: float = Field(0.0, ge=0.0, description="cosine from the schedule's LR to lr "
                                 "over these epochs")

    def first_epoch(self, epochs: int) -> int:
        return self.start_epoch if self.start_epoch is not None else epochs * 3 // 4 + 1


class TrainConfig(Options):
    epochs: int = Field(5, ge=1)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    mixup: float = Field(0.0, ge=0.0, description="Beta alpha of mixup; 0 turns it off")
    cutmix: float = Field(0.0, ge=0.0, description="Beta alpha of CutMix; 0 turns it off")
    mix_prob: float = Field(1.0, ge=0.0, le=1.0, description="share of batches mixed")
    mix_switch_prob: float = Field(0.5, ge=0.0, le=1.0,
                                   description="CutMix instead of mixup when both are on")
    ema: EmaConfig | None = None
    early_stopping: EarlyStoppingConfig | None = None
    swa: SwaConfig | None = None
    lookahead: LookaheadConfig | None = Field(None, description="slow weights copied back into "
                                              "the trained ones every few steps; the run ends "
                                              "on the slow weights")

    @model_validator(mode="after")
    def _one_final_weights(self):
        averaging = "train.ema" if self.ema else "train.swa" if self.swa else None
        if self.lookahead and averaging:
            raise ValueError(f"train.lookahead and {averaging} would both decide the final "
                             f"weights (the slow weights, the average); keep one of them")
        return self

    @model_validator(mode="after")
    def _swa_fits(self):
        if self.swa is None:
            return self
        if self.swa.first_epoch(self.epochs) > self.epochs:
            raise ValueError(f"train.swa.start_epoch is {self.swa.start_epoch}, after the last "
                             f"epoch ({self.epochs}); start the average at an epoch from 1 to "
                             f"{self.epochs}")
        if self.ema:
            raise ValueError("train.ema and train.swa both average the weights and only one can "
                             "be the final model; keep one of them")
        if self.early_stopping and self.early_stopping.restore_best:
            raise ValueError("train.early_stopping.restore_best would replace the weight average "
                             "that train.swa makes the final model; set "
                             "train.early_stopping.restore_best=false or drop train.swa")
        return self

    @model_validator(mode="after")
    def _ema_metric_needs_ema(self):
        if self.early_stopping and averaged_by(self.early_stopping.metric) == "ema" and \
                not self.ema:
            raise ValueError(f"train.early_stopping.metric {self.early_stopping.metric} watches "
                             "the weight average, but train.ema is off; set train.ema (e.g. "
                             "{decay: 0.999}) or watch val_loss")
        return self
    grad_clip: float | None = Field(None, gt=0.0, description="max global gradient norm")
    accumulate: int = Field(1, ge=1, description="micro-batches per optimizer step")
    device: str = "auto"
    threads: int | None = Field(None, ge=1, description="default: every core this process may use")
    channels_last: Literal["auto"] | bool = "auto"
    compile: bool = Field(False, description="torch.compile the training forward; compiling "
                          "costs its time in the first steps (see bench/choices.py)")
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    checkpoint_every: int = Field(0, ge=0, description="optimizer steps; 0: at epoch ends only")
    tta: Literal["none", "flip", "flip_translate"] = Field(
        "none", description="test-time augmentation of evaluation, predict and export: flip "
        "averages an image and its mirror; flip_translate (airbench) also the flip averages of "
        "1-pixel diagonal shifts (weights 1/2 unshifted, 1/4 each shift)")
    test: bool = Field(True, description="evaluate the final weights on the test split at the "
                       "end; false skips it (the doctor's runs, which choose on val_acc only; "
                       "`cnnlab eval` can still do it later)")
    sync_bn: bool = Field(False, description="batch-norm statistics over all processes of a "
                          "distributed run")
    log_every: int = Field(10, ge=1, description="steps between progress updates")
    tensorboard: bool = Field(False, description="also write the curves and the diagnostics' "
                              "per-layer statistics as TensorBoard events in the run folder "
                              "(needs cnnlab[tensorboard])")

    @field_validator("amp", mode="before")
    @classmethod
    def _amp_off_is_not_false(cls, value):
        # YAML 1.1 reads a bare `off` as false; `amp: off` means the setting "off".
        return "off" if value is False else value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError("accepted: auto, cpu, cuda, cuda:N, mps")
        return value


class DiagnosticsConfig(Options):
    every: int = Field(50, ge=0, description="shortest interval between samples in optimizer "
                       "steps (the first steps and 20 per run are always sampled); 0: off")
    budget: float | None = Field(0.05, gt=0.0, le=1.0, description="largest average share of "
                                 "step time sampling may cost, measured in the run: the interval "
                                 "widens to fit; null: keep `every`")
    max_samples: int = Field(2000, ge=10, description="beyond this, keep every other sample")
    explode_threshold: float = Field(1e3, gt=0.0, description="global gradient norm alarm")


class Config(Options):
    name: str = Field("run", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = Field(0, ge=0)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelSpec = Field(default_factory=lambda: {"arch": "simple_cnn"})
    optim: OptimizerSpec = "sgd"
    schedule: ScheduleSpec = "cosine"
    train: TrainConfig = Field(default_factory=TrainConfig)
    diagnostics: DiagnosticsConfig = Field(default_factory=DiagnosticsConfig)

    @model_validator(mode="after")
    def _plateau_metric_exists(self):
        metric = getattr(self.schedule, "metric", None)
        if metric and averaged_by(metric) == "ema" and not self.train.ema:
            raise ValueError(f"schedule.metric {metric} watches the weight average, but "
                             "train.ema is off; set train.ema or watch val_loss")
        return self


# -------------------------------------------------------------------------------------------
# Reading YAML and overrides


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory; a config file is expected (a YAML file such "
                        f"as examples/quickstart.yaml)")
    if not path.is_file():
        raise UserError(f"config file {path} does not exist; give the path of a YAML config "
                        "(see examples/)")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"config file {path} is not text (byte {error.start} is not UTF-8); "
                        "give a YAML config (see examples/)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UserError(f"config file {path} is not valid YAML ({_first_line(error)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of sections (name, data, model, "
                        f"...), not a {type(data).__name__}")
    return data


# Keys that name a file or folder. A relative one in a config file means relative to that file
# (so a config and its data can move together); one given with -o or in a Python dict means
# relative to the current folder, as any path typed at a prompt does. Either way the config holds
# an absolute path afterwards, so a run folder works from any directory.
PATH_KEYS = (("data", "root"), ("data", "cache_dir"), ("model", "path"))


def absolute_paths(raw: dict, base: Path) -> dict:
    """Make every relative path key of `raw` absolute against `base`, in place."""
    for section, key in PATH_KEYS:
        node = raw.get(section)
        if not isinstance(node, dict) or not isinstance(node.get(key), str) or not node[key]:
            continue
        path = Path(node[key]).expanduser()
        node[key] = os.path.abspath(path if path.is_absolute() else Path(base) / path)
    return raw


def config_file_for(source: str | Path, overrides: list[str] | tuple[str, ...],
                    out: str | Path) -> dict:
    """The user's config file with their -o overrides applied, to be written to `out` (by
    `lr-find --apply` and the doctor's recommended.yaml): its own relative paths keep naming the
    same files when `out` is in another folder, and an -o path means the folder the command ran
    in."""
    source = Path(source)
    raw = read_yaml(source)
    if source.absolute().parent != Path(out).absolute().parent:
        absolute_paths(raw, source.absolute().parent)
    for item in overrides:
        apply_override(raw, item)
        key = tuple(item.partition("=")[0].strip().split("."))
        if key in PATH_KEYS:
            section, name = key
            value = raw[section][name]
            if isinstance(value, str) and value:
                raw[section][name] = os.path.abspath(Path(value).expanduser())
    return raw


def read_config_file(path: str | Path) -> dict:
    """A config file's mapping with its relative paths made absolute against the file's folder."""
    return absolute_paths(read_yaml(path), Path(path).expanduser().absolute().parent)


def _first_line(error: Exception) -> str:
    return shorten(" ".join(str(error).split()), 300)


# What an error message may echo of a value the user gave, in characters.
ECHO_LIMIT = 80
# Values (mappings, lists and scalars) a config may hold once YAML aliases are expanded; a real
# config has a few hundred, while 1 KB of nested aliases can stand for billions.
MAX_CONFIG_VALUES = 100_000


def shorten(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text`, cut to `limit` characters with a note of its full length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def shown(value: object) -> str:
    """A value as an error message echoes it: its repr, shortened."""
    if isinstance(value, (dict, list)) and count_values(value, ECHO_LIMIT) >= ECHO_LIMIT:
        return f"a {type(value).__name__} of over {ECHO_LIMIT} values"
    return shorten(repr(value))


def count_values(value: object, limit: int) -> int:
    """How many values `value` holds with aliases expanded, counting up to `limit` at most (so
    a self-referencing or exponentially aliased structure costs no more than `limit` steps)."""
    count, stack = 0, [value]
    while stack and count < limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return count


def check_expansion(raw: dict, source: str) -> None:
    if count_values(raw, MAX_CONFIG_VALUES + 1) > MAX_CONFIG_VALUES:
        raise UserError(f"{source} expands to over {MAX_CONFIG_VALUES:,} values (nested YAML "
                        "aliases?); a config holds a few hundred, so write it out without "
                        "repeated aliases")


INIT_KEYS = {"default", "rules", "bias", "zero_init_residual"}


def apply_override(raw: dict, override: str) -> None:
    """Set `a.b.c=value` in `raw`, the value parsed as YAML (so `0.1`, `true`, `[1, 2]` and
    `{name: normal, std: 0.01}` all work)."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override '{override}' is not KEY=VALUE; write e.g. -o optim.lr=0.01")
    if text.startswith("="):
        raise UserError(f"override '{override}' has '==': its value would be '{text}'; write one "
                        f"'=' between key and value (-o {key.strip()}={text.lstrip('=')}), or "
                        f"quote a value that starts with '=' (-o '{key.strip()}=\"{text}\"')")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as error:
        raise UserError(f"override {shorten(key)}: value '{shorten(text)}' is not valid YAML "
                        f"({_first_line(error)})") from None
    parts = key.strip().split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if isinstance(child, str):
            # A name (`activation: relu`) gains options: expand the shorthand first.
            child = {"default": child} if part == "init" else {"name": child}
        elif isinstance(child, dict) and part == "init" and "name" in child \
                and parts[depth + 1] in INIT_KEYS:
            child = {"default": child}
        elif child is None:
            child = {}
        elif not isinstance(child, dict):
            raise UserError(f"override {shorten(key)}: {'.'.join(parts[:depth + 1])} is "
                            f"{shown(child)}, not a section")
        node[part] = child
        node = child
    last = parts[-1]
    if last in ("name", "arch") and len(parts) > 1 and node.get(last) != value:
        _drop_foreign_keys(node, parts[-2], value)
    node[last] = value


def _drop_foreign_keys(section: dict, section_key: str, new_name: object) -> None:
    """`-o optim.name=adam` on a config written for sgd: the options only sgd takes (momentum,
    nesterov) would make the new choice invalid, so they go; keys adam shares stay. This is
    what lets an ablation vary a component by name alone."""
    from cnnlab.catalogue import catalogue

    kind = LIST_KINDS.get(section_key)
    foreign = foreign_spec_class(new_name) if kind == "models" else None
    if foreign is not None:
        # torchvision.NAME, timm.NAME, file: keep only the keys that spec takes.
        for key in [k for k in section if k not in foreign.model_fields]:
            del section[key]
        return
    registry = catalogue().get(kind) if kind else None
    if registry is None or not isinstance(new_name, str) or new_name not in registry:
        return  # validation reports the unknown name
    entry = registry.get(new_name)
    accepted = set(entry.options.model_fields) if entry.options else {"name"}
    if kind == "models":
        from cnnlab.models.base import ModelBase

        accepted = set(entry.options.model_fields if entry.options else ModelBase.model_fields)
    for key in list(section):
        # null is "the network's own" for a foreign model (a run's config.yaml writes it out);
        # a built-in model takes its default for it instead.
        foreign_null = kind == "models" and section[key] is None
        if (key not in accepted or foreign_null) and key not in ("name", "arch"):
            del section[key]


def load_config(source: str | Path | dict | None = None, overrides: list[str] | tuple = ()
                ) -> Config:
    """A validated config from a YAML file (or a dict) and `KEY=VALUE` overrides."""
    if source is None:
        raw: dict = {}
    elif isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        raw = read_config_file(source)
        check_expansion(raw, f"config file {source}")
    for override in overrides:
        apply_override(raw, override)
    check_expansion(raw, "the config with its overrides")
    return validate(absolute_paths(raw, Path.cwd()))


def validate(raw: dict) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as error:
        raise ConfigError([describe_error(e, raw) for e in error.errors()]) from None


def to_dict(cfg: BaseModel) -> dict:
    """The resolved config as plain data, each section's name or arch first."""
    return _tag_first(cfg.model_dump(mode="json"))


def _tag_first(value: Any) -> Any:
    if isinstance(value, dict):
        ordered = {k: value[k] for k in ("arch", "name") if k in value}
        ordered.update({k: _tag_first(v) for k, v in value.items() if k not in ordered})
        return ordered
    if isinstance(value, list):
        return [_tag_first(v) for v in value]
    return value


def dump_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None, width=100)


# -------------------------------------------------------------------------------------------
# Turning pydantic's errors into one sentence each


LIST_KINDS = {"model": "models", "optim": "optimizers", "schedule": "schedules",
              "activation": "activations", "norm": "norms", "default": "inits", "init": "inits",
              "bias": "inits"}


def _members(annotation: Any) -> list[Any]:
    """The alternatives of a (possibly Annotated/Optional) union annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        found = []
        for arg in typing.get_args(annotation):
            found.extend(_members(arg))
        return found
    return [annotation]


def _model_members(annotation: Any) -> list[type[BaseModel]]:
    return [m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]


def _list_item(annotation: Any) -> Any | None:
    for member in _members(annotation):
        if typing.get_origin(member) is list:
            return typing.get_args(member)[0]
    return None


def _tag_of(model: type[BaseModel]) -> tuple[str, str] | None:
    for key in ("arch", "name"):
        tag = member_tag(model, key) if key in model.model_fields else None
        if tag is not None:
            return key, tag
    return None


def _walk(loc: tuple) -> tuple[list[str], type[BaseModel] | None]:
    """The user-facing key path of an error location (union tags and type names dropped) and the
    config model that holds its last key."""
    path: list[str] = []
    annotation: Any = Config
    holder: type[BaseModel] | None = None
    for element in loc:
        models = _model_members(annotation)
        if isinstance(element, int):
            item = _list_item(annotation)
            path.append(str(element))
            annotation = item
            continue
        tagged = {_tag_of(m)[1]: m for m in models if _tag_of(m)}
        if element in tagged:
            annotation = tagged[element]
            continue
        owner = next((m for m in models if element in m.model_fields), None)
        if owner is not None:
            holder = owner
            path.append(element)
            annotation = owner.model_fields[element].annotation
            continue
        if len(models) == 1 and isinstance(element, str):
            holder = models[0]  # an unknown key inside this model
            path.append(str(element))
            annotation = None
            continue
        # A union member's type name ("float", "literal['auto']", "function-after[...]").
    return path, holder


def _nested_keys(model: type[BaseModel], key: str, prefix: str = "", depth: int = 3) -> list[str]:
    """Full paths of the keys named `key` inside the config's sections (`lr` -> `optim.lr`), so
    a key given at the wrong level is shown where it belongs."""
    found: list[str] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        if prefix and name == key and path not in found:
            found.append(path)
        if depth > 1:
            for member in _model_members(field.annotation):
                for nested in _nested_keys(member, key, path + ".", depth - 1):
                    if nested not in found:
                        found.append(nested)
    return found


def describe_error(error: dict, raw: dict) -> str:
    loc = tuple(error["loc"])
    path, holder = _walk(loc)
    where = ".".join(path) or "config"
    kind = error["type"]
    received = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        parent = ".".join(path[:-1]) or "the top level"
        accepted = sorted(holder.model_fields) if holder else []
        tag = _tag_of(holder) if holder else None
        context = f" (with {tag[0]} {tag[1]})" if tag else ""
        colon = (" (in a YAML flow map put a space after each colon: {name: normal, std: 0.01})"
                 if ":" in path[-1] else "")
        hint = did_you_mean(path[-1], accepted)
        if len(path) == 1 and not hint:
            # `-o lr=0.1`: the key exists one section down; the shallowest paths first.
            nested = sorted(_nested_keys(Config, path[-1]), key=lambda p: p.count("."))[:2]
            if nested:
                hint = f" (did you mean {' or '.join(repr(p) for p in nested)}?)"
        return (f"{shorten(where)}: unknown key{hint}; {parent}{context} "
                f"accepts: {', '.join(accepted)}{colon}")
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        from cnnlab.catalogue import catalogue

        # A field discriminator reads "'arch'", a routing function "arch()".
        tag_key = ctx.get("discriminator", "'name'").strip("'()")
        listing = LIST_KINDS.get(path[-1] if path else "", "")
        expected = catalogue()[listing].names() if listing else []
        if listing == "models":
            expected = expected + list(FOREIGN_ARCHS)
        see = f" (see `cnnlab list {listing}`)" if listing else ""
        if kind == "union_tag_not_found":
            return f"{where}: needs a '{tag_key}' key; accepted {tag_key}s: " \
                   f"{', '.join(expected)}{see}"
        tag = ctx.get("tag")
        return (f"{where}.{tag_key}: unknown name '{shorten(str(tag))}'"
                f"{did_you_mean(tag, expected)}; "
                f"accepted: {', '.join(expected)}{see}")
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        names = re.findall(r"'([^']*)'", expected)
        hint = did_you_mean(received, names) if isinstance(received, str) else ""
        return f"{where}: received {shown(received)}{hint}; accepted: {expected}"
    if kind == "missing":
        return f"{where}: required key is missing"
    if kind == NOT_A_NUMBER:
        # Raised for a whole section (see Options); the key is in the context.
        return f"{'.'.join(path + [ctx['key']])}: received {ctx['value']}; " + \
            error["msg"].split("; ", 1)[1]
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
        if re.match(r"[a-z_]+(\.[a-z_0-9]+)+[ :]", message):
            return message  # the validator named the key itself
    return f"{where}: received {shown(received)}; {message[0].lower() + message[1:]}"
