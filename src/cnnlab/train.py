"""The training loop: `fit`, readable top to bottom, and the state it checkpoints.

Every epoch trains on seeded batches, evaluates on the validation split, appends a line to
metrics.jsonl and writes a checkpoint. A checkpoint holds everything the next step depends on
(weights, optimizer, schedule and grad-scaler state, position, RNG states, the epoch's data order
and running sums, the weight average and early-stopping state), so a run killed at any moment and
resumed ends with the same weights, bit for bit on CPU, as one never interrupted.
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
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from cnnlab import distributed
from cnnlab.assemble import assemble
from cnnlab.checkpoint import (LAST, PREVIOUS, DamagedCheckpoint, load_for_resume, load_weights,
                               read_checkpoint, save_checkpoint, save_weights)
from cnnlab.config_changes import check_resume_config
from cnnlab.components.optimizers import build_optimizer, momentum_key, set_hyperparameters
from cnnlab.components.schedules import optimizer_steps_per_epoch
from cnnlab.config import Config, dump_yaml, load_config, to_dict
from cnnlab.configured_schedule import schedule_for_config
from cnnlab.diagnostics import UPDATE_RATIO_MIN_LR_SHARE, Diagnostics
from cnnlab.errors import DiskFull, Interrupted, NonFiniteLossError, UserError
from cnnlab.evaluate import TOP5_MIN_CLASSES, evaluate
from cnnlab.lr_units import images_per_step
from cnnlab.models import count_parameters
from cnnlab.progress import Progress
from cnnlab.regularization.early_stopping import EarlyStopping
from cnnlab.regularization.ema import WeightEma
from cnnlab.regularization.mixing import mix, mixed_correct, mixed_loss
from cnnlab.regularization.swa import WeightAverage
from cnnlab.rundir import RunDir, new_run_path
from cnnlab.runtime import environment
from cnnlab.seeding import generator, rng_state, seed_everything, set_rng_state

CHECKPOINT_FORMAT = 1
# Sees each epoch's metrics line; True stops the run after that epoch (a search's pruning).
EpochObserver = Callable[[dict], bool]
EARLY_STOPPING_WEIGHTS = "early_stopping_best.safetensors"


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
          on_epoch: EpochObserver | None = None) -> dict:
    """Train a new run from `cfg`; returns its summary. `out` is the run folder (default
    runs/<name>-<timestamp>). `on_epoch(record)` sees each metrics line; returning True stops
    the run there (how a search prunes it)."""
    world = distributed.world()
    path = None
    claimed = None
    if world.is_main:
        # Created and locked for the run's life: a second run into the folder is refused.
        claimed = RunDir.create(Path(out) if out else new_run_path(cfg.name))
        # The config goes in first, so a run killed while loading data can still be resumed;
        # the resolved version replaces it once the data statistics and runtime are known.
        claimed.write_config(dump_yaml(cfg))
        path = claimed.path
    run = RunDir(world.broadcast(path))
    try:
        return _fit_or_report_disk_full(cfg, run, progress=progress, on_epoch=on_epoch)
    finally:
        if claimed is not None:
            claimed.unlock()


FINISHED = ("completed", "pruned")


def resume(run_dir: str | Path, progress: bool = True,
           on_epoch: EpochObserver | None = None, force: bool = False) -> dict:
    """Continue an interrupted run from its last checkpoint; a finished run is left untouched.
    A config.yaml edited since the checkpoint is refused, unless `force` and the edits leave the
    saved state's shapes alone (see config_changes.FORCEABLE); accepted edits are recorded."""
    run = RunDir.open(Path(run_dir))
    if distributed.world().is_main:
        run.lock()  # refused while the run, or another resume of it, is still going
    try:
        summary = run.read_summary()
        if summary and summary.get("status") in FINISHED:
            return {**summary, "already_finished": True}
        return _fit_or_report_disk_full(load_config(run.config), run, progress=progress,
                                        resuming=True, on_epoch=on_epoch, force=force)
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


def _zero_sums(device) -> dict:
    return {"loss": torch.zeros((), dtype=torch.float64, device=device),
            "correct": torch.zeros((), dtype=torch.float64, device=device),
            "count": torch.zeros((), dtype=torch.long, device=device),
            "seconds": torch.zeros((), dtype=torch.float64)}


@dataclass
class Position:
    """Where training is, and what it has accumulated: the part of a checkpoint that is not a
    component's own state."""

    epoch: int = 0  # the epoch in progress (0-based)
    micro: int = 0  # micro-batches of it already done
    step: int = 0  # optimizer steps done in the whole run
    history: list = field(default_factory=list)
    best: dict = field(default_factory=dict)
    elapsed: float = 0.0
    sums: dict | None = None
    order: torch.Tensor | None = None
    stopped_early: int | None = None
    pruned: bool = False
    resume_changes: list = field(default_factory=list)  # config edits a forced resume accepted


def fit(cfg: Config, run: RunDir, progress: bool = True, resuming: bool = False,
        on_epoch: EpochObserver | None = None, force: bool = False) -> dict:
    world = distributed.world()
    main = world.is_main  # only the first process writes files and prints
    # Resume from the newest readable checkpoint (refusing when none is readable), checking
    # the config against the one it was trained with before anything is built from it.
    state, state_path = (load_for_resume(run.checkpoints, keep_evidence=main) if resuming
                         else (None, None))
    accepted_changes = []
    if state is not None and "config" in state:
        accepted_changes = check_resume_config(state["config"], to_dict(cfg), str(state_path),
                                               str(run.config), force)
    assembly = assemble(cfg, world=world)
    cfg, model, runtime = assembly.cfg, assembly.model, assembly.runtime
    device, num_classes = runtime.device, assembly.data.num_classes
    batches = assembly.train_batches()
    accumulate = cfg.train.accumulate
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
    steps_per_epoch = optimizer_steps_per_epoch(batches.steps_per_epoch, accumulate)
    micro_per_epoch = steps_per_epoch * accumulate
    optimizer = build_optimizer(cfg.optim, model, images_per_step(cfg))
    schedule = schedule_for_config(cfg, batches.steps_per_epoch)
    momentum_name = momentum_key(cfg.optim)
    peak_lr = max(schedule.lr(t) for t in range(0, schedule.ctx.total_steps,
                                                max(1, schedule.ctx.total_steps // 1000)))
    scaler = torch.amp.GradScaler(device.type) if runtime.amp == "fp16" else None
    ema = (WeightEma(model, cfg.train.ema.decay, cfg.train.ema.warmup_steps, cfg.train.ema.every)
           if cfg.train.ema else None)
    swa = (WeightAverage(model, cfg.train.swa.first_epoch(cfg.train.epochs))
           if cfg.train.swa else None)
    diagnostics = (Diagnostics(model, cfg.diagnostics.every, cfg.diagnostics.max_samples,
                               cfg.diagnostics.explode_threshold, schedule.ctx.total_steps,
                               cfg.diagnostics.budget)
                   if cfg.diagnostics.every > 0 and main else None)
    stopper = (EarlyStopping(cfg.train.early_stopping.metric, cfg.train.early_stopping.mode,
                             cfg.train.early_stopping.patience,
                             cfg.train.early_stopping.min_delta)
               if cfg.train.early_stopping else None)

    # Start fresh, or from the newest readable checkpoint.
    if state is not None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"{state_path} was written by another cnnlab version (format "
                            f"{state.get('format')}); start a new run")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        for component, key in ((scaler, "scaler"), (ema, "ema"), (swa, "swa"),
                               (stopper, "early_stopping")):
            if component is not None:
                component.load_state_dict(state[key])
        if diagnostics is not None:
            diagnostics.load_state_dict(state["diagnostics"], run.path)
        set_rng_state(state["rng"])
        pos = Position(**state["position"])
        pos.sums = {k: v.to(device) if k != "seconds" else v for k, v in pos.sums.items()}
        if accepted_changes:
            pos.resume_changes += [{**change, "step": pos.step} for change in accepted_changes]
            shown_changes = ", ".join(f"{c['key']} {c['old']!r} -> {c['new']!r}"
                                      for c in accepted_changes)
            warnings.warn(f"resuming {run.path} with the edited config (--force): "
                          f"{shown_changes}", stacklevel=2)
        if main:
            run.write_metrics(pos.history)
            if accepted_changes:  # the resolved form of the edited config, as a new run has
                run.write_config(dump_yaml(cfg))
                run.write_config_hash(to_dict(cfg))
    else:
        seed_everything(cfg.seed)
        if main:
            run.write_config(dump_yaml(cfg))
            run.write_config_hash(to_dict(cfg))
            run.write_classes(assembly.data.classes, assembly.data.in_channels,
                              assembly.data.image_size)
            run.write_metrics([])
        pos = Position()
    if main:
        run.write_environment({**environment(runtime), "processes": world.size})
    # The training forward goes through DDP, which averages gradients over the processes;
    # state, evaluation and hooks use the model itself.
    net = model
    if world.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    # Compiled graphs serve the ordinary steps; a step that diagnostics sample runs eagerly,
    # so their hooks see every layer and never force a recompilation.
    eager_net = net
    if cfg.train.compile:
        net = torch.compile(net)

    shown = Progress(cfg.train.epochs, steps_per_epoch, enabled=progress and main)
    shown.write(f"resuming {run.path} at epoch {pos.epoch + 1}, step {pos.step} (from "
                f"{state_path.name})" if state is not None else f"run folder: {run.path}")
    started = time.perf_counter() - pos.elapsed

    def checkpoint() -> None:
        pos.elapsed = time.perf_counter() - started
        if not main:
            return
        if diagnostics is not None:
            diagnostics.save(run.path)  # first, so the checkpoint never counts unsaved samples
        position = {**pos.__dict__, "sums": {k: v.detach().cpu() for k, v in pos.sums.items()}}
        save_checkpoint({
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "scaler": scaler.state_dict() if scaler else None,
            "ema": ema.state_dict() if ema else None,
            "swa": swa.state_dict() if swa else None,
            "early_stopping": stopper.state_dict() if stopper else None,
            "diagnostics": diagnostics.state_dict() if diagnostics else None,
            "position": position,
            "rng": rng_state(),
            "config": to_dict(cfg),  # what a resume compares config.yaml with
        }, run.checkpoints)

    def status(name: str, extra: dict | None = None) -> dict:
        summary = _summary(cfg, run, assembly, name, pos, time.perf_counter() - started, extra)
        if main:
            run.write_summary(summary)
        return summary

    pending_losses: list[tuple[int, torch.Tensor]] = []
    last_batch: list = []

    def loss_of(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, label_smoothing=cfg.train.label_smoothing)

    def check_losses() -> None:
        """Read back the losses since the last check; stop at the first non-finite one."""
        if not pending_losses:
            return
        values = torch.stack([loss for _, loss in pending_losses]).tolist()
        bad = next(((step, v) for (step, _), v in zip(pending_losses, values)
                    if not math.isfinite(v)), None)
        pending_losses.clear()
        if world.distributed:
            # Every process stops at the same step, or the others would wait forever.
            first = torch.tensor([float(bad[0]) if bad else math.inf], dtype=torch.float64)
            dist.all_reduce(first, op=dist.ReduceOp.MIN)
            bad = None if math.isinf(first.item()) else (int(first.item()), bad[1] if bad
                                                         else math.nan)
        if bad is None:
            return
        step, value = bad
        if diagnostics is not None and last_batch:
            diagnostics.probe_non_finite(model, *last_batch, step, loss_of)
            diagnostics.save(run.path)
        last_good = run.checkpoints / "last.pt"
        where = (f"the last good checkpoint is {last_good}" if last_good.exists()
                 else "no checkpoint was written before it")
        status("diverged", {"diverged_step": step, "diverged_epoch": pos.epoch + 1})
        raise NonFiniteLossError(
            f"loss became {value} at step {step} (epoch {pos.epoch + 1}); training stopped and "
            f"{where}; lower optim.lr, add a warmup or set train.grad_clip", step, pos.epoch + 1)

    status("running")
    with stop_requests() as stop:
        while pos.epoch < cfg.train.epochs and pos.stopped_early is None:
            if pos.order is None:
                pos.order = batches.order(pos.epoch)
            if pos.sums is None:
                pos.sums = _zero_sums(device)
            sums = pos.sums
            model.train()
            epoch_started = time.perf_counter()
            trained_before = int(sums["count"])
            for x, y in batches.epoch(pos.epoch, pos.micro, order=pos.order):
                if pos.micro >= micro_per_epoch:
                    break
                if pos.micro % accumulate == 0:
                    step_started = time.perf_counter()
                # Diagnostics sample the micro-batch that completes a sampled optimizer step.
                sampled = (diagnostics is not None and diagnostics.want(pos.step)
                           and (pos.micro + 1) % accumulate == 0)
                mixed = mix(x, y, cfg.train, generator(cfg.seed, "mix", pos.epoch, pos.micro))
                inputs = mixed.images if mixed else x
                last_batch[:] = [inputs, y]
                with diagnostics.capture() if sampled else nullcontext(), runtime.autocast():
                    logits = (eager_net if sampled else net)(inputs).float()
                    loss = (mixed_loss(logits, mixed, cfg.train.label_smoothing) if mixed
                            else loss_of(logits, y))
                scaled = loss / accumulate
                (scaler.scale(scaled) if scaler else scaled).backward()
                pos.micro += 1
                with torch.no_grad():
                    sums["loss"] += loss.detach().double() * y.shape[0]
                    sums["correct"] += (mixed_correct(logits, mixed) if mixed
                                        else (logits.argmax(1) == y).sum()).double()
                    sums["count"] += y.shape[0]
                pending_losses.append((pos.step, loss.detach()))
                if pos.micro % accumulate:
                    continue

                lr = schedule.lr(pos.step)
                set_hyperparameters(optimizer, lr, schedule.momentum(pos.step), momentum_name)
                if scaler:
                    scaler.unscale_(optimizer)
                if sampled:
                    diagnostics.before_update(model)  # gradient norms before clipping
                if cfg.train.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                stepped = optimizer_step(optimizer, scaler)
                optimizer.zero_grad(set_to_none=True)
                if stepped:
                    pos.step += 1
                    if ema:
                        ema.update(model, pos.step)
                if diagnostics is not None:
                    if sampled:
                        steady = (pos.step > schedule.warmup
                                  and lr >= UPDATE_RATIO_MIN_LR_SHARE * peak_lr)
                        for alarm in diagnostics.after_update(pos.step - 1, lr, steady):
                            shown.write(f"alarm: {alarm['kind']} at {alarm['layer'] or 'model'} "
                                        f"(step {alarm['step']}): {alarm['detail']}")
                    if device.type == "cuda" and (sampled or diagnostics.want(pos.step)):
                        torch.cuda.synchronize()  # honest times around sampled steps only
                    if pos.step > 2:  # the first steps pay one-off kernel set-up
                        diagnostics.time_step(sampled, time.perf_counter() - step_started)

                step_in_epoch = pos.micro // accumulate
                if step_in_epoch % cfg.train.log_every == 0 or pos.micro == micro_per_epoch:
                    check_losses()
                    seen = int(sums["count"])
                    rate = (seen - trained_before) / max(time.perf_counter() - epoch_started, 1e-9)
                    shown.step(pos.epoch + 1, step_in_epoch, float(sums["loss"]) / max(seen, 1),
                               float(sums["correct"]) / max(seen, 1), lr, rate)
                stop_now = stop["signal"] is not None
                if world.distributed:  # all processes stop at the same step
                    flag = torch.tensor([1.0 if stop_now else 0.0])
                    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                    stop_now = bool(flag.item())
                every = cfg.train.checkpoint_every
                if stop_now or (every and pos.step % every == 0 and pos.micro < micro_per_epoch):
                    check_losses()
                    sums["seconds"] += time.perf_counter() - epoch_started
                    epoch_started = time.perf_counter()
                    trained_before = int(sums["count"])
                    checkpoint()
                if stop_now:
                    shown.close()
                    status("interrupted")
                    raise Interrupted(
                        f"stopped at step {pos.step} (epoch {pos.epoch + 1}) on request, with a "
                        f"checkpoint; resume with: cnnlab train --resume {run.path}")
            check_losses()
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # the epoch's time includes its queued GPU work

            record = _epoch_record(assembly, model, ema, schedule, pos, sums,
                                   float(sums["seconds"]) + time.perf_counter() - epoch_started,
                                   time.perf_counter() - started)
            pos.history.append(record)
            if swa is not None and swa.collects(pos.epoch + 1):
                swa.update(model)
            if not pos.best or record["val_acc"] > pos.best["val_acc"]:
                pos.best = {"val_acc": record["val_acc"], "epoch": pos.epoch + 1}
                if main:
                    run.checkpoints.mkdir(parents=True, exist_ok=True)
                    save_weights(model, run.best_weights, {"weights": "best",
                                                           "epoch": str(pos.epoch + 1)})
            if stopper is not None:
                improved, stop_training = stopper.observe(pos.epoch + 1, record)
                if improved and cfg.train.early_stopping.restore_best and main:
                    # Keep the weights of the model the metric measured: ema_* is the average.
                    watched = ema.model if stopper.metric.startswith("ema_") else model
                    save_weights(watched, run.checkpoints / EARLY_STOPPING_WEIGHTS,
                                 {"weights": "early stopping best", "epoch": str(pos.epoch + 1)})
                if stop_training:
                    pos.stopped_early = pos.epoch + 1
            schedule.observe(record)
            if main:
                run.append_metrics(record)
            shown.epoch(record)
            if on_epoch is not None and on_epoch(record):
                pos.pruned = True
                pos.stopped_early = pos.epoch + 1
                shown.write(f"stopped after epoch {pos.epoch + 1} at the observer's request")
            if pos.stopped_early and stopper is not None:
                waited = f"{stopper.waited} epoch{'s' if stopper.waited != 1 else ''}"
                shown.write(f"early stopping: {stopper.metric} has not improved for {waited} "
                            f"(best {stopper.best:.4g} at epoch {stopper.best_epoch})")

            pos.epoch, pos.micro, pos.sums, pos.order = pos.epoch + 1, 0, _zero_sums("cpu"), None
            checkpoint()
            pos.sums = None
            status("running")

    # The final weights are the average when there is one (the EMA, or SWA once it has folded in
    # an epoch), unless early stopping restores the best epoch of the model its metric watched
    # (a config check keeps restore_best away from SWA).
    final = ema.model if ema else model
    extra = {"weights": "ema" if ema else "raw"}
    if swa is not None:
        extra.update(_finish_average(swa, assembly, shown))
        if swa.averaged:
            final = swa.model
            extra["weights"] = "swa"
    if stopper is not None:
        extra.update({"stopped_early": pos.stopped_early, "early_stopping_best_epoch":
                      stopper.best_epoch, "early_stopping_best": stopper.best})
        if cfg.train.early_stopping.restore_best and stopper.best_epoch is not None:
            final = ema.model if stopper.metric.startswith("ema_") else model
            world.barrier()  # rank 0 wrote the file
            load_weights(final, run.checkpoints / EARLY_STOPPING_WEIGHTS)
            extra.update({"restored_epoch": stopper.best_epoch,
                          "weights": "ema" if final is not model else "raw"})
    if diagnostics is not None:
        diagnostics.save(run.path)
        extra["diagnostics"] = {"alarms": len(diagnostics.alarms),
                                "overhead": diagnostics.overhead()}
    if not assembly.data.val_is_test:
        test = evaluate(final, assembly.eval_batches("test"), runtime, num_classes, world,
                        cfg.train.tta)
        extra.update({f"test_{k}": v for k, v in test.items()})
    if (ema or swa) and main:
        save_weights(model, run.path / "model_raw.safetensors",
                     {"weights": "final", "average": "none", "epoch": str(pos.epoch)})
    if main:
        save_weights(final, run.final_weights,
                     {"weights": "final", "average": extra["weights"],
                      "epoch": str(extra.get("restored_epoch", pos.epoch))})
    if world.distributed:
        extra["processes"] = world.size
    summary = status("pruned" if pos.pruned else "completed", extra)
    shown.close()
    world.barrier()
    return summary


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


def _finish_average(swa: WeightAverage, assembly, shown: Progress) -> dict:
    """Batch-norm statistics for the averaged weights, then their validation metrics."""
    if not swa.averaged:
        shown.write(f"no weight average: training ended before epoch {swa.start_epoch}, where "
                    "train.swa starts averaging")
        return {"swa_epochs": 0}
    # Every process sees all the training images, so the statistics agree across processes.
    swa.recompute_batch_norm(assembly.eval_batches("train", sharded=False))
    val = evaluate(swa.model, assembly.eval_batches("val"), assembly.runtime,
                   assembly.data.num_classes, assembly.world, assembly.cfg.train.tta)
    shown.write(f"weight average of {swa.averaged} epochs (from epoch {swa.start_epoch}): "
                f"val_acc {val['acc']:.4f}, val_loss {val['loss']:.4f}")
    return {"swa_epochs": swa.averaged, **{f"final_swa_val_{k}": v for k, v in val.items()}}


def _epoch_record(assembly, model, ema, schedule, pos: Position, sums: dict,
                  train_seconds: float, seconds: float) -> dict:
    """The metrics.jsonl line of the epoch that just ended."""
    runtime, num_classes, world = assembly.runtime, assembly.data.num_classes, assembly.world
    # Each process summed its own slice of every batch: add them up for the whole epoch.
    totals = world.sum(torch.stack([sums["loss"].double(), sums["correct"].double(),
                                    sums["count"].double()]).to(runtime.device)).tolist()
    trained = int(totals[2])
    tta = assembly.cfg.train.tta
    val = evaluate(model, assembly.eval_batches("val"), runtime, num_classes, world, tta)
    record = {"epoch": pos.epoch + 1, "step": pos.step,
              "train_loss": totals[0] / max(trained, 1),
              "train_acc": totals[1] / max(trained, 1),
              "val_loss": val["loss"], "val_acc": val["acc"]}
    if "top5" in val:
        record["val_top5"] = val["top5"]
    if ema is not None:
        averaged = evaluate(ema.model, assembly.eval_batches("val"), runtime, num_classes, world,
                            tta)
        record.update({f"ema_val_{k}": v for k, v in averaged.items()})
    record.update({"lr": schedule.lr(max(pos.step - 1, 0)),
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
    for key in ("val_acc", "val_loss", "val_top5", "train_loss", "train_acc", "ema_val_acc",
                "ema_val_loss"):
        if key in last:
            summary[f"final_{key}"] = last[key]
    if pos.history:
        images = sum(h["images_per_s"] * h["train_seconds"] for h in pos.history)
        summary["images_per_s"] = images / max(sum(h["train_seconds"] for h in pos.history),
                                               1e-9)
    summary.update(extra or {})
    not_finite = [key for key in ("final_val_loss", "final_train_loss")
                  if isinstance(summary.get(key), float) and not math.isfinite(summary[key])]
    if status == "completed" and not_finite:
        # Every training step's loss was finite, yet the network it left is not (a NaN validation
        # loss from, say, overflowing batch-norm statistics): that is a diverged run, for every
        # reader of the summary alike, not a completed one with a missing metric.
        summary["status"] = "diverged"
        which = "validation" if "val" in not_finite[0] else "training"
        summary["diverged_reason"] = f"the final {which} loss is {summary[not_finite[0]]}"
    return summary
