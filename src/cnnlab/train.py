"""The training loop: `fit`, readable top to bottom as setup -> restore (or start) -> the epochs
-> finish, each phase a function of its own below it, in that order.

Every epoch trains on seeded batches, evaluates on the validation split, appends a line to
metrics.jsonl and writes a checkpoint. A checkpoint holds everything the next step depends on
(weights, optimizer, schedule and grad-scaler state, position, RNG states, the epoch's data order
and running sums, the weight average and early-stopping state), so a run killed at any moment and
resumed ends with the same weights, bit for bit on CPU, as one never interrupted. What it holds
is registered once, in `setup`, with the run's `TrainState` (train_state.py).
"""

from __future__ import annotations

import errno
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from cnnlab import distributed
from cnnlab.assemble import Assembly, assemble
from cnnlab.checkpoint import (LAST, PREVIOUS, DamagedCheckpoint, load_for_resume, load_weights,
                               read_checkpoint, save_weights)
from cnnlab.config_changes import check_resume_config
from cnnlab.components.optimizers import build_optimizer, momentum_key, set_hyperparameters
from cnnlab.components.param_roles import describe_groups, drop_frozen_gradients
from cnnlab.components.schedules import Schedule, optimizer_steps_per_epoch
from cnnlab.config import Config, dump_yaml, load_config, to_dict
from cnnlab.configured_schedule import schedule_for_config
from cnnlab.data.loaders import TrainBatches
from cnnlab.data.python_data import data_again, use_data
from cnnlab.data.sources import RawData
from cnnlab.diagnostics import UPDATE_RATIO_MIN_LR_SHARE, Diagnostics
from cnnlab.errors import DiskFull, Interrupted, NonFiniteLossError, UserError
from cnnlab.evaluate import TOP5_MIN_CLASSES, evaluate
from cnnlab.lr_units import images_per_step
from cnnlab.metric_names import LOSS_KEYS, final_keys
from cnnlab.model_arg import for_run, with_model
from cnnlab.models import count_parameters
from cnnlab.models.foreign import FileModel
from cnnlab.models.user_code import SuppliedModel, check_unchanged, source_record
from cnnlab.progress import Progress
from cnnlab.regularization.averaging import WeightAveraging, final_weights, watched_weights
from cnnlab.regularization.early_stopping import EarlyStopping
from cnnlab.regularization.ema import WeightEma
from cnnlab.regularization.lookahead import Lookahead
from cnnlab.regularization.mixing import mix, mixed_correct, mixed_loss
from cnnlab.regularization.swa import WeightAverage
from cnnlab.rundir import RunDir, new_run_path
from cnnlab.runtime import environment
from cnnlab.seeding import generator, seed_everything
from cnnlab.tensorboard_log import TensorBoardLog, summary_writer_class
from cnnlab.train_state import GlobalRng, LoadsWith, Position, TrainState, zero_sums

# Sees each epoch's metrics line; True stops the run after that epoch (a search's pruning).
EpochObserver = Callable[[dict], bool]


@contextmanager
def stop_requests():
    """Turn the first SIGINT/SIGTERM into a flag the loop checks between steps (a second one
    interrupts at once), so a stop never lands in the middle of an optimizer update."""
    requested = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum, frame):
        if requested["signal"] is not None:
            raise KeyboardInterrupt
        requested["signal"] = signum

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def train(cfg: Config, out: str | Path | None = None, progress: bool = True,
          on_epoch: EpochObserver | None = None, model: object = None, *, data=None) -> dict:
    """Train a new run from `cfg`; returns its summary. `out` is the run folder (default
    runs/<name>-<timestamp>). `on_epoch(record)` sees each metrics line; returning True stops
    the run there (how a search prunes it). `model` is your own network: an nn.Module (a deep
    copy is trained; your object is left as it is) or a factory (in_channels, num_classes) ->
    nn.Module; config.yaml then records `model: {arch: python, name: ...}`. `data`: a Dataset
    of (image, label), arrays (x, y) or a dict of splits, used instead of `cfg.data.dataset`
    (see cnnlab.data.python_data); it is converted, and refused, before the run folder
    exists."""
    cfg, given = use_data(cfg, data)
    cfg, supplied = with_model(cfg, model)
    world = distributed.world()
    path = None
    claimed = None
    if world.is_main:
        # Created and locked for the run's life: a second run into the folder is refused.
        claimed = RunDir.create(Path(out) if out else new_run_path(cfg.name))
        # The config goes in first, so a run killed while loading data can still be resumed;
        # the resolved version replaces it once the data statistics and runtime are known.
        claimed.write_config(dump_yaml(cfg))
        if isinstance(cfg.model, FileModel):
            # The user's code is part of what was trained: a resume checks it is unchanged.
            claimed.write_model_source(source_record(cfg.model.path))
        path = claimed.path
    run = RunDir(world.broadcast(path))
    try:
        return _fit_or_report_disk_full(cfg, run, progress=progress, on_epoch=on_epoch,
                                        supplied=supplied, given=given)
    finally:
        if claimed is not None:
            claimed.unlock()


FINISHED = ("completed", "pruned")


def resume(run_dir: str | Path, progress: bool = True,
           on_epoch: EpochObserver | None = None, force: bool = False,
           model: object = None, *, data=None) -> dict:
    """Continue an interrupted run from its last checkpoint; a finished run is left untouched.
    A config.yaml edited since the checkpoint is refused, unless `force` and the edits leave the
    saved state's shapes alone (see config_changes.FORCEABLE); accepted edits are recorded.
    A run trained on a network given in Python needs the same `model` again; one trained on a
    model file is refused when the file changed since. A run trained on `data=` needs the same
    data again."""
    run = RunDir.open(Path(run_dir))
    if distributed.world().is_main:
        run.lock()  # refused while the run, or another resume of it, is still going
    try:
        summary = run.read_summary()
        if summary and summary.get("status") in FINISHED:
            return {**summary, "already_finished": True}
        recorded = run.read_model_source()
        if recorded is not None:
            check_unchanged(recorded, f"run {run.path}")
        cfg = load_config(run.config)
        given = data_again(cfg, data, "cnnlab.resume")
        return _fit_or_report_disk_full(cfg, run, progress=progress, resuming=True,
                                        on_epoch=on_epoch, force=force,
                                        supplied=for_run(cfg, model, f"run {run.path}"),
                                        given=given)
    finally:
        run.unlock()


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _fit_or_report_disk_full(cfg: Config, run: RunDir, **options) -> dict:
    """`fit`, with a full disk reported as such: checkpoints are written to a temporary file
    first, so the last one survives; the run is marked interrupted so that it can be resumed."""
    try:
        return fit(cfg, run, **options)
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        raise _disk_full(run, error) from None


def _disk_full(run: RunDir, error: OSError) -> DiskFull:
    intact = None
    for name in (LAST, PREVIOUS):
        try:
            read_checkpoint(run.checkpoints / name)
        except (DamagedCheckpoint, FileNotFoundError):
            continue
        intact = run.checkpoints / name
        break
    note = ""
    if distributed.world().is_main:
        try:
            run.write_summary({**(run.read_summary() or {}), "status": "interrupted",
                               "stopped_by": "disk full"})
        except OSError:
            note = " (summary.json could not be updated either)"
    where = f" while writing {error.filename}" if error.filename else ""
    kept = (f"the last checkpoint, {intact}, is intact" if intact is not None
            else "no checkpoint had been written yet")
    return DiskFull(f"the disk holding {run.path} is full{where}; {kept}; free some space and "
                    f"continue with `cnnlab train --resume {run.path}`{note}")


@dataclass
class Training:
    """What `setup` builds for one run and every later phase reads: the parts, the numbers
    derived from the config, and the state a checkpoint holds."""

    cfg: Config  # resolved: data statistics and runtime filled in
    run: RunDir
    world: distributed.World
    assembly: Assembly
    batches: TrainBatches
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler | None
    averages: list[WeightAveraging]  # the weight averages (EMA or SWA), if any
    lookahead: Lookahead | None  # train.lookahead: slow weights synced into the model
    diagnostics: Diagnostics | None  # on the main process only
    stopper: EarlyStopping | None
    position: Position
    state: TrainState
    shown: Progress
    steps_per_epoch: int  # optimizer steps
    micro_per_epoch: int  # micro-batches: optimizer steps x train.accumulate
    peak_lr: float
    momentum_name: str | None
    # The training forward goes through DDP and torch.compile; state, evaluation and hooks use
    # the model itself. Set by `prepare_networks` once the weights are restored.
    net: nn.Module | None = None
    eager_net: nn.Module | None = None
    started: float = 0.0  # perf_counter() at the run's start, resumed runs included
    # Losses not yet read back from the device (a read waits for the GPU), with their steps.
    pending_losses: list[tuple[int, torch.Tensor]] = field(default_factory=list)
    last_batch: tuple = ()  # the latest micro-batch, probed after a non-finite loss
    # train.tensorboard: an observer of the metrics lines and diagnostics samples (main only).
    tensorboard: TensorBoardLog | None = None

    @property
    def model(self) -> nn.Module:
        return self.assembly.model

    @property
    def device(self) -> torch.device:
        return self.assembly.runtime.device

    @property
    def main(self) -> bool:
        return self.world.is_main  # only the first process writes files and prints


@dataclass
class EpochClock:
    """Times the training part of an epoch; a checkpoint mid-epoch banks what has passed."""

    started: float
    trained_before: int  # images of this epoch trained before `started`


def fit(cfg: Config, run: RunDir, progress: bool = True, resuming: bool = False,
        on_epoch: EpochObserver | None = None, force: bool = False,
        supplied: SuppliedModel | None = None, given: RawData | None = None) -> dict:
    """Train the run in `run` to its end: set up, restore or start, loop over the epochs, finish.
    Returns the summary. `supplied`: the network of an `arch: python` config."""
    world = distributed.world()
    # Resume from the newest readable checkpoint (refusing when none is readable), checking
    # the config against the one it was trained with before anything is built from it.
    checkpoint, source = (load_for_resume(run.checkpoints, keep_evidence=world.is_main)
                          if resuming else (None, None))
    accepted_changes = []
    if checkpoint is not None and "config" in checkpoint:
        accepted_changes = check_resume_config(checkpoint["config"], to_dict(cfg), str(source),
                                               str(run.config), force)
    training = setup(cfg, run, world, progress, supplied, given)
    if checkpoint is not None:
        restore(training, checkpoint, source, accepted_changes)
    else:
        start(training)
    if world.is_main:
        run.write_environment({**environment(training.assembly.runtime), "processes": world.size})
    prepare_networks(training)
    pos = training.position
    training.shown.write(f"resuming {run.path} at epoch {pos.epoch + 1}, step {pos.step} "
                         f"(from {source.name})" if checkpoint is not None
                         else f"run folder: {run.path}")
    training.started = time.perf_counter() - pos.elapsed
    write_status(training, "running")
    with stop_requests() as stop, training.tensorboard or nullcontext():
        while pos.epoch < training.cfg.train.epochs and pos.stopped_early is None:
            clock = train_epoch(training, stop)
            end_epoch(training, clock, on_epoch)
    return finish(training)


def setup(cfg: Config, run: RunDir, world: distributed.World, progress: bool,
          supplied: SuppliedModel | None = None, given: RawData | None = None) -> Training:
    """Build the model, data, optimizer, schedule and every stateful component, and register
    each with the state a checkpoint holds. `given`: data passed in Python, converted."""
    if cfg.train.tensorboard and world.is_main:
        summary_writer_class()  # a missing package is refused before the data is loaded
    assembly = assemble(cfg, world=world, supplied=supplied, given=given)
    cfg, model, runtime = assembly.cfg, assembly.model, assembly.runtime
    batches = assembly.train_batches()
    _check_against_data(cfg, assembly, batches)
    accumulate = cfg.train.accumulate
    steps_per_epoch = optimizer_steps_per_epoch(batches.steps_per_epoch, accumulate)
    optimizer = build_optimizer(cfg.optim, model, images_per_step(cfg))
    schedule = schedule_for_config(cfg, batches.steps_per_epoch)
    peak_lr = max(schedule.lr(step) for step in range(0, schedule.ctx.total_steps,
                                                      max(1, schedule.ctx.total_steps // 1000)))
    scaler = torch.amp.GradScaler(runtime.device.type) if runtime.amp == "fp16" else None
    ema = (WeightEma(model, cfg.train.ema.decay, cfg.train.ema.warmup_steps, cfg.train.ema.every)
           if cfg.train.ema else None)
    swa = (WeightAverage(model, cfg.train.swa.first_epoch(cfg.train.epochs))
           if cfg.train.swa else None)
    lookahead = (Lookahead(model, cfg.train.lookahead.every, cfg.train.lookahead.decay,
                           cfg.train.lookahead.ramp, schedule.ctx.total_steps)
                 if cfg.train.lookahead else None)
    diagnostics = (Diagnostics(model, cfg.diagnostics.every, cfg.diagnostics.max_samples,
                               cfg.diagnostics.explode_threshold, schedule.ctx.total_steps,
                               cfg.diagnostics.budget)
                   if cfg.diagnostics.every > 0 and world.is_main else None)
    stopper = (EarlyStopping(cfg.train.early_stopping.metric, cfg.train.early_stopping.mode,
                             cfg.train.early_stopping.patience,
                             cfg.train.early_stopping.min_delta)
               if cfg.train.early_stopping else None)
    position = Position()

    # The one place a stateful component is registered: its state is in every checkpoint.
    state = TrainState(config=to_dict(cfg))
    state.register("model", model)
    state.register("optimizer", optimizer)
    state.register("schedule", schedule)
    state.register("scaler", scaler)
    state.register("ema", ema)
    state.register("swa", swa)
    if lookahead is not None:  # a key of its own only when on: other checkpoints keep format 1's
        state.register("lookahead", lookahead)
    state.register("early_stopping", stopper)
    state.register("diagnostics", LoadsWith(diagnostics, run.path)
                   if diagnostics is not None else None)
    state.register("position", LoadsWith(position, runtime.device))
    state.register("rng", GlobalRng())

    return Training(
        cfg=cfg, run=run, world=world, assembly=assembly, batches=batches, optimizer=optimizer,
        schedule=schedule, scaler=scaler, averages=[a for a in (ema, swa) if a is not None],
        lookahead=lookahead,
        diagnostics=diagnostics, stopper=stopper, position=position, state=state,
        shown=Progress(cfg.train.epochs, steps_per_epoch, enabled=progress and world.is_main),
        steps_per_epoch=steps_per_epoch, micro_per_epoch=steps_per_epoch * accumulate,
        peak_lr=peak_lr, momentum_name=momentum_key(cfg.optim))


def _check_against_data(cfg: Config, assembly: Assembly, batches: TrainBatches) -> None:
    """Refuse config values that only the loaded data shows to be impossible."""
    accumulate, num_classes = cfg.train.accumulate, assembly.data.num_classes
    if batches.steps_per_epoch < accumulate:
        raise UserError(f"train.accumulate={accumulate} needs at least {accumulate} batches per "
                        f"epoch, but {len(assembly.data.train)} training images make "
                        f"{batches.steps_per_epoch}; lower train.accumulate or data.batch_size")
    for key, metric in (("train.early_stopping.metric", getattr(cfg.train.early_stopping, "metric",
                                                                 None)),
                        ("schedule.metric", getattr(cfg.schedule, "metric", None))):
        if metric and metric.endswith("top5") and num_classes < TOP5_MIN_CLASSES:
            raise UserError(f"{key} is {metric}, but top-5 accuracy is measured only with "
                            f"{TOP5_MIN_CLASSES} or more classes and this data has {num_classes}; "
                            "watch val_acc or val_loss")


def restore(training: Training, checkpoint: dict, source: Path, accepted_changes: list[dict]
            ) -> None:
    """Continue from `checkpoint` (read from `source`), recording the config edits a forced
    resume accepted."""
    kept = _forced_group_settings(training.optimizer, checkpoint, accepted_changes)
    training.state.restore(checkpoint, source)
    for group, values in zip(training.optimizer.param_groups, kept):
        group.update(values)
    pos, run = training.position, training.run
    if accepted_changes:
        pos.resume_changes += [{**change, "step": pos.step} for change in accepted_changes]
        shown_changes = ", ".join(f"{c['key']} {c['old']!r} -> {c['new']!r}"
                                  for c in accepted_changes)
        warnings.warn(f"resuming {run.path} with the edited config (--force): "
                      f"{shown_changes}", stacklevel=3)
    if training.main:
        run.write_metrics(pos.history)
        if training.cfg.train.tensorboard:
            training.tensorboard = TensorBoardLog(run.tensorboard_dir, resumed_at_step=pos.step)
        if accepted_changes:  # the resolved form of the edited config, as a new run has
            run.write_config(dump_yaml(training.cfg))
            run.write_config_hash(to_dict(training.cfg))


# The optimizer settings a forced edit of these keys changes in every param group. torch's
# Optimizer.load_state_dict puts back the saved groups' settings, which would silently undo the
# edit; the decoupled convention turns optim.lr into each group's weight decay too.
FORCED_GROUP_SETTINGS = {"optim.weight_decay": ("weight_decay",), "optim.momentum": ("momentum",),
                         "optim.lr": ("weight_decay",)}


def _forced_group_settings(optimizer: torch.optim.Optimizer, checkpoint: dict,
                           accepted_changes: list[dict]) -> list[dict]:
    """The freshly built optimizer's group settings that `accepted_changes` edited, to put back
    over the checkpoint's; refuses an edit that changed how the parameters are grouped."""
    if not accepted_changes:
        return []
    saved = checkpoint.get("optimizer", {}).get("param_groups", [])
    if len(saved) != len(optimizer.param_groups):
        edits = ", ".join(f"{c['key']} {c['old']!r} -> {c['new']!r}" for c in accepted_changes)
        raise UserError(f"the edited config ({edits}) splits the parameters into "
                        f"{len(optimizer.param_groups)} optimizer groups where the checkpoint has "
                        f"{len(saved)} (a weight decay of 0 keeps biases and norms with the "
                        "weights), so its optimizer state cannot be resumed; start a new run "
                        "with the new config, or edit back")
    keys = {name for c in accepted_changes for name in FORCED_GROUP_SETTINGS.get(c["key"], ())}
    return [{name: group[name] for name in keys if name in group}
            for group in optimizer.param_groups]


def start(training: Training) -> None:
    """Begin a new run: seed, and write the run folder's first files."""
    seed_everything(training.cfg.seed)
    if training.main:
        data = training.assembly.data
        training.run.write_config(dump_yaml(training.cfg))
        training.run.write_config_hash(to_dict(training.cfg))
        training.run.write_classes(data.classes, data.in_channels, data.image_size)
        training.run.write_metrics([])
        if training.cfg.train.tensorboard:
            training.tensorboard = TensorBoardLog(training.run.tensorboard_dir)


def prepare_networks(training: Training) -> None:
    """The networks the training forward runs: DDP (which averages gradients over processes and
    broadcasts the restored weights from the first) and torch.compile when configured."""
    net = training.model
    device = training.device
    if training.world.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            training.model, device_ids=[device.index] if device.type == "cuda" else None)
    # Compiled graphs serve the ordinary steps; a step that diagnostics sample runs eagerly,
    # so their hooks see every layer and never force a recompilation.
    training.eager_net = net
    training.net = torch.compile(net) if training.cfg.train.compile else net


def train_epoch(training: Training, stop: dict) -> EpochClock:
    """The batches of the epoch in progress, from where the position says, one optimizer step
    per train.accumulate micro-batches."""
    pos, accumulate = training.position, training.cfg.train.accumulate
    if pos.order is None:
        pos.order = training.batches.order(pos.epoch)
    if pos.sums is None:
        pos.sums = zero_sums(training.device)
    training.model.train()
    clock = EpochClock(started=time.perf_counter(), trained_before=int(pos.sums["count"]))
    for x, y in training.batches.epoch(pos.epoch, pos.micro, order=pos.order):
        if pos.micro >= training.micro_per_epoch:
            break
        if pos.micro % accumulate == 0:
            step_started = time.perf_counter()
        # Diagnostics sample the micro-batch that completes a sampled optimizer step.
        sampled = (training.diagnostics is not None and training.diagnostics.want(pos.step)
                   and (pos.micro + 1) % accumulate == 0)
        forward_backward(training, x, y, sampled)
        if pos.micro % accumulate:
            continue
        lr = update_weights(training, sampled)
        if training.diagnostics is not None:
            observe_step(training, lr, sampled, step_started)
        show_progress(training, lr, clock)
        checkpoint_or_stop(training, stop, clock)
    check_losses(training)
    if training.device.type == "cuda":
        torch.cuda.synchronize(training.device)  # the epoch's time includes its queued GPU work
    return clock


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float
                        ) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


def forward_backward(training: Training, x: torch.Tensor, y: torch.Tensor, sampled: bool) -> None:
    """One micro-batch: mix it if configured, compute its loss, add its share of the gradients,
    and add it to the epoch's sums."""
    pos, cfg = training.position, training.cfg
    mixed = mix(x, y, cfg.train, generator(cfg.seed, "mix", pos.epoch, pos.micro))
    inputs = mixed.images if mixed else x
    training.last_batch = (inputs, y)
    hooks = training.diagnostics.capture() if sampled else nullcontext()
    with hooks, training.assembly.runtime.autocast():
        logits = (training.eager_net if sampled else training.net)(inputs).float()
        loss = (mixed_loss(logits, mixed, cfg.train.label_smoothing) if mixed
                else classification_loss(logits, y, cfg.train.label_smoothing))
    scaled = loss / cfg.train.accumulate
    (training.scaler.scale(scaled) if training.scaler else scaled).backward()
    pos.micro += 1
    with torch.no_grad():
        pos.sums["loss"] += loss.detach().double() * y.shape[0]
        pos.sums["correct"] += (mixed_correct(logits, mixed) if mixed
                                else (logits.argmax(1) == y).sum()).double()
        pos.sums["count"] += y.shape[0]
    training.pending_losses.append((pos.step, loss.detach()))


def update_weights(training: Training, sampled: bool) -> float:
    """One optimizer step at the schedule's LR and momentum; returns the LR."""
    pos = training.position
    lr = training.schedule.lr(pos.step)
    set_hyperparameters(training.optimizer, lr, training.schedule.momentum(pos.step),
                        training.momentum_name)
    if training.scaler:
        training.scaler.unscale_(training.optimizer)
    if sampled:
        training.diagnostics.before_update(training.model)  # gradient norms before clipping
    # Frozen groups (optim.groups) by the epoch alone, so a resumed run freezes the same ones.
    drop_frozen_gradients(training.optimizer, pos.epoch)
    if training.cfg.train.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(training.model.parameters(), training.cfg.train.grad_clip)
    stepped = optimizer_step(training.optimizer, training.scaler)
    training.optimizer.zero_grad(set_to_none=True)
    if stepped:
        pos.step += 1
        if training.lookahead is not None:
            training.lookahead.after_step(training.model, pos.step)
        for average in training.averages:
            average.after_step(training.model, pos.step)
    return lr


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None
                   ) -> bool:
    """One optimizer update of unscaled gradients; False when the fp16 grad scaler skipped it
    (inf or NaN gradients), so that the step counter, and with it the schedule, stays put."""
    if scaler is None:
        optimizer.step()
        return True
    scale = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    return scaler.get_scale() >= scale  # the scaler lowers its scale exactly when it skips


def observe_step(training: Training, lr: float, sampled: bool, step_started: float) -> None:
    """The diagnostics' part of a step: the update's statistics and alarms, and its time."""
    pos, diagnostics = training.position, training.diagnostics
    if sampled:
        steady = (pos.step > training.schedule.warmup
                  and lr >= UPDATE_RATIO_MIN_LR_SHARE * training.peak_lr)
        for alarm in diagnostics.after_update(pos.step - 1, lr, steady):
            training.shown.write(f"alarm: {alarm['kind']} at {alarm['layer'] or 'model'} "
                                 f"(step {alarm['step']}): {alarm['detail']}")
        if training.tensorboard is not None:
            training.tensorboard.samples(diagnostics.records, diagnostics.layers,
                                         diagnostics.weighted)
    if training.device.type == "cuda" and (sampled or diagnostics.want(pos.step)):
        torch.cuda.synchronize()  # honest times around sampled steps only
    if pos.step > 2:  # the first steps pay one-off kernel set-up
        diagnostics.time_step(sampled, time.perf_counter() - step_started)


def show_progress(training: Training, lr: float, clock: EpochClock) -> None:
    """Every train.log_every steps and at the epoch's end: check the losses, show the line."""
    pos, sums = training.position, training.position.sums
    step_in_epoch = pos.micro // training.cfg.train.accumulate
    if step_in_epoch % training.cfg.train.log_every and pos.micro != training.micro_per_epoch:
        return
    check_losses(training)
    seen = int(sums["count"])
    rate = (seen - clock.trained_before) / max(time.perf_counter() - clock.started, 1e-9)
    training.shown.step(pos.epoch + 1, step_in_epoch, float(sums["loss"]) / max(seen, 1),
                        float(sums["correct"]) / max(seen, 1), lr, rate)


def checkpoint_or_stop(training: Training, stop: dict, clock: EpochClock) -> None:
    """A checkpoint every train.checkpoint_every steps; on a stop request, a checkpoint and
    Interrupted."""
    pos = training.position
    stop_now = stop["signal"] is not None
    if training.world.distributed:  # all processes stop at the same step
        flag = torch.tensor([1.0 if stop_now else 0.0])
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        stop_now = bool(flag.item())
    every = training.cfg.train.checkpoint_every
    if stop_now or (every and pos.step % every == 0 and pos.micro < training.micro_per_epoch):
        check_losses(training)
        pos.sums["seconds"] += time.perf_counter() - clock.started
        clock.started = time.perf_counter()
        clock.trained_before = int(pos.sums["count"])
        save(training)
    if stop_now:
        training.shown.close()
        write_status(training, "interrupted")
        raise Interrupted(f"stopped at step {pos.step} (epoch {pos.epoch + 1}) on request, with "
                          f"a checkpoint; resume with: cnnlab train --resume {training.run.path}")


def check_losses(training: Training) -> None:
    """Read back the losses since the last check; stop at the first non-finite one."""
    if not training.pending_losses:
        return
    values = torch.stack([loss for _, loss in training.pending_losses]).tolist()
    bad = next(((step, v) for (step, _), v in zip(training.pending_losses, values)
                if not math.isfinite(v)), None)
    training.pending_losses.clear()
    if training.world.distributed:
        # Every process stops at the same step, or the others would wait forever.
        first = torch.tensor([float(bad[0]) if bad else math.inf], dtype=torch.float64)
        dist.all_reduce(first, op=dist.ReduceOp.MIN)
        bad = None if math.isinf(first.item()) else (int(first.item()), bad[1] if bad
                                                     else math.nan)
    if bad is None:
        return
    step, value = bad
    epoch = training.position.epoch + 1
    if training.diagnostics is not None and training.last_batch:
        loss_of = partial(classification_loss, label_smoothing=training.cfg.train.label_smoothing)
        training.diagnostics.probe_non_finite(training.model, *training.last_batch, step, loss_of)
        training.diagnostics.save(training.run.path)
    last_good = training.run.checkpoints / LAST
    where = (f"the last good checkpoint is {last_good}" if last_good.exists()
             else "no checkpoint was written before it")
    write_status(training, "diverged", {"diverged_step": step, "diverged_epoch": epoch})
    raise NonFiniteLossError(
        f"loss became {value} at step {step} (epoch {epoch}); training stopped and "
        f"{where}; lower optim.lr, add a warmup or set train.grad_clip", step, epoch)


def save(training: Training) -> None:
    """Write a checkpoint of the whole training state (the first process only)."""
    training.position.elapsed = time.perf_counter() - training.started
    if not training.main:
        return
    if training.diagnostics is not None:
        # First, so that the checkpoint never counts samples that are not saved.
        training.diagnostics.save(training.run.path)
    training.state.save(training.run.checkpoints)


def write_status(training: Training, status: str, extra: dict | None = None) -> dict:
    """The summary as of now, with `status`; written to the run folder by the first process."""
    summary = _summary(training.cfg, training.run, training.assembly, status, training.position,
                       time.perf_counter() - training.started, extra)
    if training.cfg.optim.groups:  # which tensors each optim.groups rule reached
        summary["parameter_groups"] = describe_groups(training.optimizer)
    if training.main:
        training.run.write_summary(summary)
    return summary


def end_epoch(training: Training, clock: EpochClock, on_epoch: EpochObserver | None) -> None:
    """Evaluate the epoch, record it, let the averages, the best-weights copy, early stopping,
    the schedule and the observer see it, and checkpoint the start of the next one."""
    pos, main = training.position, training.main
    train_seconds = float(pos.sums["seconds"]) + time.perf_counter() - clock.started
    record = _epoch_record(training, train_seconds, time.perf_counter() - training.started)
    pos.history.append(record)
    for average in training.averages:
        average.after_epoch(training.model, pos.epoch + 1)
    if not pos.best or record["val_acc"] > pos.best["val_acc"]:
        pos.best = {"val_acc": record["val_acc"], "epoch": pos.epoch + 1}
        if main:
            training.run.checkpoints.mkdir(parents=True, exist_ok=True)
            save_weights(training.model, training.run.best_weights, {"weights": "best",
                                                                     "epoch": str(pos.epoch + 1)})
    if training.stopper is not None:
        _observe_early_stopping(training, record)
    training.schedule.observe(record)
    if main:
        training.run.append_metrics(record)
        if training.tensorboard is not None:  # drawn from the line just recorded
            training.tensorboard.epoch(record)
    training.shown.epoch(record)
    if on_epoch is not None and on_epoch(record):
        pos.pruned = True
        pos.stopped_early = pos.epoch + 1
        training.shown.write(f"stopped after epoch {pos.epoch + 1} at the observer's request")
    if pos.stopped_early and training.stopper is not None:
        stopper = training.stopper
        waited = f"{stopper.waited} epoch{'s' if stopper.waited != 1 else ''}"
        training.shown.write(f"early stopping: {stopper.metric} has not improved for {waited} "
                             f"(best {stopper.best:.4g} at epoch {stopper.best_epoch})")
    pos.epoch, pos.micro, pos.sums, pos.order = pos.epoch + 1, 0, zero_sums("cpu"), None
    save(training)
    pos.sums = None
    write_status(training, "running")


def _observe_early_stopping(training: Training, record: dict) -> None:
    """Early stopping sees the epoch; an improvement keeps the weights its metric measured."""
    pos, stopper = training.position, training.stopper
    improved, stop_training = stopper.observe(pos.epoch + 1, record)
    if improved and training.cfg.train.early_stopping.restore_best and training.main:
        watched = watched_weights(stopper.metric, training.model, training.averages)
        save_weights(watched.module, training.run.early_stopping_weights,
                     {"weights": "early stopping best", "epoch": str(pos.epoch + 1)})
    if stop_training:
        pos.stopped_early = pos.epoch + 1


def finish(training: Training) -> dict:
    """Settle the final weights, evaluate them on the test split, write them and the summary."""
    pos, run, main, assembly = training.position, training.run, training.main, training.assembly
    if training.lookahead is not None:
        # Done at the last step already; again here for a run that stopped before it.
        training.lookahead.copy_slow_into(training.model)
    final, extra = _final_weights(training)
    if training.diagnostics is not None:
        training.diagnostics.save(run.path)
        extra["diagnostics"] = {"alarms": len(training.diagnostics.alarms),
                                "overhead": training.diagnostics.overhead()}
    if training.cfg.train.test and not assembly.data.val_is_test:
        test = evaluate(final, assembly.eval_batches("test"), assembly.runtime,
                        assembly.data.num_classes, training.world, training.cfg.train.tta)
        extra.update({f"test_{k}": v for k, v in test.items()})
    if training.averages and main:
        save_weights(training.model, run.raw_weights,
                     {"weights": "final", "average": "none", "epoch": str(pos.epoch)})
    if main:
        save_weights(final, run.final_weights,
                     {"weights": "final", "average": extra["weights"],
                      "epoch": str(extra.get("restored_epoch", pos.epoch))})
    if training.world.distributed:
        extra["processes"] = training.world.size
    summary = write_status(training, "pruned" if pos.pruned else "completed", extra)
    training.shown.close()
    training.world.barrier()
    return summary


def _final_weights(training: Training) -> tuple[nn.Module, dict]:
    """The module the run ends with, and what the summary says about it. That is the average
    when there is one (the EMA, or SWA once it has folded in an epoch), unless early stopping
    restores the best epoch of the weights its metric watched (a config check keeps
    restore_best away from SWA)."""
    chosen = final_weights(training.model, training.averages)
    extra = {"weights": chosen.label}
    for average in training.averages:
        extra.update(average.finish(lambda: training.assembly.eval_batches("train", sharded=False),
                                    partial(_validate, training), training.shown.write))
    stopper = training.stopper
    if stopper is not None:
        extra.update({"stopped_early": training.position.stopped_early,
                      "early_stopping_best_epoch": stopper.best_epoch,
                      "early_stopping_best": stopper.best})
        if training.cfg.train.early_stopping.restore_best and stopper.best_epoch is not None:
            chosen = watched_weights(stopper.metric, training.model, training.averages)
            training.world.barrier()  # rank 0 wrote the file
            load_weights(chosen.module, training.run.early_stopping_weights)
            extra.update({"restored_epoch": stopper.best_epoch, "weights": chosen.label})
    return chosen.module, extra


def _validate(training: Training, model: nn.Module) -> dict:
    """`model`'s metrics on the validation split."""
    assembly = training.assembly
    return evaluate(model, assembly.eval_batches("val"), assembly.runtime,
                    assembly.data.num_classes, training.world, training.cfg.train.tta)


def _epoch_record(training: Training, train_seconds: float, seconds: float) -> dict:
    """The metrics.jsonl line of the epoch that just ended."""
    pos, sums, world = training.position, training.position.sums, training.world
    # Each process summed its own slice of every batch: add them up for the whole epoch.
    totals = world.sum(torch.stack([sums["loss"].double(), sums["correct"].double(),
                                    sums["count"].double()]).to(training.device)).tolist()
    trained = int(totals[2])
    val = _validate(training, training.model)
    record = {"epoch": pos.epoch + 1, "step": pos.step,
              "train_loss": totals[0] / max(trained, 1),
              "train_acc": totals[1] / max(trained, 1),
              "val_loss": val["loss"], "val_acc": val["acc"]}
    if "top5" in val:
        record["val_top5"] = val["top5"]
    for average in training.averages:
        if average.validated_every_epoch:
            record.update({f"{average.name}_val_{k}": v
                           for k, v in _validate(training, average.model).items()})
    record.update({"lr": training.schedule.lr(max(pos.step - 1, 0)),
                   "images_per_s": trained / max(train_seconds, 1e-9),
                   "train_seconds": train_seconds, "seconds": seconds})
    return record


def _summary(cfg: Config, run: RunDir, assembly, status: str, pos: Position, seconds: float,
             extra: dict | None = None) -> dict:
    last = pos.history[-1] if pos.history else {}
    summary = {
        "name": cfg.name,
        "status": status,
        "run_dir": str(run.path),
        "seed": cfg.seed,
        "dataset": cfg.data.dataset,
        "arch": cfg.model.arch,
        "epochs": cfg.train.epochs,
        "epochs_completed": len(pos.history),
        "steps": pos.step,
        "parameters": count_parameters(assembly.model),
        "num_classes": assembly.data.num_classes,
        "best_val_acc": pos.best.get("val_acc"),
        "best_epoch": pos.best.get("epoch"),
        "seconds": seconds,
    }
    if pos.resume_changes:
        summary["resume_changes"] = pos.resume_changes
    summary.update(final_keys(last))
    if pos.history:
        images = sum(h["images_per_s"] * h["train_seconds"] for h in pos.history)
        summary["images_per_s"] = images / max(sum(h["train_seconds"] for h in pos.history),
                                               1e-9)
    summary.update(extra or {})
    not_finite = [key for key in LOSS_KEYS
                  if isinstance(summary.get(key), float) and not math.isfinite(summary[key])]
    if status == "completed" and not_finite:
        # Every training step's loss was finite, yet the network it left is not (a NaN validation
        # loss from, say, overflowing batch-norm statistics): that is a diverged run, for every
        # reader of the summary alike, not a completed one with a missing metric.
        summary["status"] = "diverged"
        which = "validation" if "val" in not_finite[0] else "training"
        summary["diverged_reason"] = f"the final {which} loss is {summary[not_finite[0]]}"
    return summary
