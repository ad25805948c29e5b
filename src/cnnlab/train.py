"""The training loop: one function, `fit`, readable top to bottom.

Every epoch trains on seeded batches, evaluates on the validation split, appends a line to
metrics.jsonl and writes a checkpoint. A checkpoint holds everything the next step depends on
(weights, optimizer and schedule state, position, RNG states, the epoch's data order and running
sums), so a run killed at any moment and resumed ends with the same weights, bit for bit on CPU,
as one never interrupted.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.assemble import Assembly, assemble
from cnnlab.checkpoint import load_latest, save_checkpoint, save_weights
from cnnlab.components.optimizers import build_optimizer, momentum_key, set_hyperparameters
from cnnlab.components.schedules import build_schedule, optimizer_steps_per_epoch
from cnnlab.config import Config, dump_yaml, load_config
from cnnlab.errors import Interrupted, NonFiniteLossError, UserError
from cnnlab.evaluate import evaluate
from cnnlab.models import count_parameters
from cnnlab.progress import Progress
from cnnlab.rundir import RunDir, new_run_path
from cnnlab.runtime import environment
from cnnlab.seeding import rng_state, seed_everything, set_rng_state

CHECKPOINT_FORMAT = 1


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


def train(cfg: Config, out: str | Path | None = None, progress: bool = True) -> dict:
    """Train a new run from `cfg`; returns its summary. `out` is the run folder (default
    runs/<name>-<timestamp>)."""
    run = RunDir.create(Path(out) if out else new_run_path(cfg.name))
    # The config goes in first, so a run killed while loading data can still be resumed; the
    # resolved version replaces it once the data statistics and runtime are known.
    run.write_config(dump_yaml(cfg))
    return fit(cfg, run, progress=progress)


def resume(run_dir: str | Path, progress: bool = True) -> dict:
    """Continue an interrupted run from its last checkpoint; a finished run is left untouched."""
    run = RunDir.open(Path(run_dir))
    summary = run.read_summary()
    if summary and summary.get("status") == "completed":
        summary = dict(summary)
        summary["already_finished"] = True
        return summary
    cfg = load_config(run.config)
    return fit(cfg, run, progress=progress, resuming=True)


def _summary(cfg: Config, run: RunDir, assembly: Assembly, status: str, history: list[dict],
             best: dict, global_step: int, seconds: float, extra: dict | None = None) -> dict:
    last = history[-1] if history else {}
    summary = {
        "name": cfg.name,
        "status": status,
        "run_dir": str(run.path),
        "seed": cfg.seed,
        "dataset": cfg.data.dataset,
        "arch": cfg.model.arch,
        "epochs": cfg.train.epochs,
        "epochs_completed": len(history),
        "steps": global_step,
        "parameters": count_parameters(assembly.model),
        "num_classes": assembly.data.num_classes,
        "best_val_acc": best.get("val_acc"),
        "best_epoch": best.get("epoch"),
        "seconds": seconds,
    }
    for key in ("val_acc", "val_loss", "val_top5", "train_loss", "train_acc"):
        if key in last:
            summary[f"final_{key}"] = last[key]
    if history:
        images = sum(h["images_per_s"] * h["train_seconds"] for h in history)
        summary["images_per_s"] = images / max(sum(h["train_seconds"] for h in history), 1e-9)
    summary.update(extra or {})
    return summary


def fit(cfg: Config, run: RunDir, progress: bool = True, resuming: bool = False) -> dict:
    assembly = assemble(cfg)
    cfg = assembly.cfg
    model, runtime = assembly.model, assembly.runtime
    batches = assembly.train_batches()
    accumulate = cfg.train.accumulate
    if batches.steps_per_epoch < accumulate:
        raise UserError(f"train.accumulate={accumulate} needs at least {accumulate} batches per "
                        f"epoch, but {len(assembly.data.train)} training images make "
                        f"{batches.steps_per_epoch}; lower train.accumulate or data.batch_size")
    steps_per_epoch = optimizer_steps_per_epoch(batches.steps_per_epoch, accumulate)
    micro_per_epoch = steps_per_epoch * accumulate
    optimizer = build_optimizer(cfg.optim, model, cfg.data.batch_size * accumulate)
    schedule = build_schedule(cfg, batches.steps_per_epoch)
    momentum_name = momentum_key(cfg.optim)
    device = runtime.device
    num_classes = assembly.data.num_classes

    # Start fresh, or from the newest readable checkpoint.
    state, state_path = load_latest(run.checkpoints) if resuming else (None, None)
    if state is not None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"{state_path} was written by another cnnlab version (format "
                            f"{state.get('format')}); start a new run")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        set_rng_state(state["rng"])
        epoch, micro_start, global_step = state["epoch"], state["micro_step"], state["global_step"]
        history, best, elapsed = list(state["history"]), dict(state["best"]), state["elapsed"]
        sums = {k: v.to(device) for k, v in state["sums"].items()}
        order = state["order"]
        run.write_metrics(history)
    else:
        seed_everything(cfg.seed)
        run.write_config(dump_yaml(cfg))
        run.write_metrics([])
        epoch, micro_start, global_step = 0, 0, 0
        history, best, elapsed = [], {}, 0.0
        sums, order = None, None
    run.write_environment(environment(runtime))

    shown = Progress(cfg.train.epochs, steps_per_epoch, enabled=progress)
    if state is not None:
        shown.write(f"resuming {run.path} at epoch {epoch + 1}, step {global_step} "
                    f"(from {state_path.name})")
    else:
        shown.write(f"run folder: {run.path}")
    started = time.perf_counter() - elapsed

    def checkpoint(epoch_index: int, micro_step: int, epoch_sums, epoch_order) -> None:
        save_checkpoint({
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(),
            "epoch": epoch_index,
            "micro_step": micro_step,
            "global_step": global_step,
            "sums": {k: v.detach().cpu() for k, v in epoch_sums.items()},
            "order": epoch_order,
            "history": history,
            "best": best,
            "rng": rng_state(),
            "elapsed": time.perf_counter() - started,
        }, run.checkpoints)

    def status(name: str, extra: dict | None = None) -> dict:
        summary = _summary(cfg, run, assembly, name, history, best, global_step,
                           time.perf_counter() - started, extra)
        run.write_summary(summary)
        return summary

    status("running")
    pending_losses: list[tuple[int, torch.Tensor]] = []

    def check_losses() -> None:
        """Read back the losses since the last check; stop at the first non-finite one."""
        if not pending_losses:
            return
        values = torch.stack([loss for _, loss in pending_losses]).tolist()
        for (step, _), value in zip(pending_losses, values):
            if not math.isfinite(value):
                pending_losses.clear()
                last_good = run.checkpoints / "last.pt"
                where = (f"the last good checkpoint is {last_good}" if last_good.exists()
                         else "no checkpoint was written before it")
                status("diverged", {"diverged_step": step, "diverged_epoch": epoch + 1})
                raise NonFiniteLossError(
                    f"loss became {value} at step {step} (epoch {epoch + 1}); training stopped "
                    f"and {where}; lower optim.lr, add a warmup or set train.grad_clip",
                    step, epoch + 1)
        pending_losses.clear()

    with stop_requests() as stop:
        while epoch < cfg.train.epochs:
            if order is None:
                order = batches.order(epoch)
            if sums is None:
                sums = _zero_sums(device)
            model.train()
            epoch_started = time.perf_counter()
            trained_before = int(sums["count"])
            micro = micro_start
            for x, y in batches.epoch(epoch, micro_start, order=order):
                if micro >= micro_per_epoch:
                    break
                with runtime.autocast():
                    logits = model(x)
                    loss = F.cross_entropy(logits.float(), y,
                                           label_smoothing=cfg.train.label_smoothing)
                (loss / accumulate).backward()
                micro += 1
                with torch.no_grad():
                    sums["loss"] += loss.detach().double() * y.shape[0]
                    sums["correct"] += (logits.argmax(1) == y).sum()
                    sums["count"] += y.shape[0]
                pending_losses.append((global_step, loss.detach()))
                if micro % accumulate:
                    continue

                lr = schedule.lr(global_step)
                set_hyperparameters(optimizer, lr, schedule.momentum(global_step), momentum_name)
                if cfg.train.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                global_step += 1

                step_in_epoch = micro // accumulate
                if step_in_epoch % cfg.train.log_every == 0 or micro == micro_per_epoch:
                    check_losses()
                    seen = int(sums["count"])
                    rate = (seen - trained_before) / max(time.perf_counter() - epoch_started, 1e-9)
                    shown.step(epoch + 1, step_in_epoch, float(sums["loss"]) / max(seen, 1),
                               int(sums["correct"]) / max(seen, 1), lr, rate)
                stop_now = stop["signal"] is not None
                every = cfg.train.checkpoint_every
                if (every and global_step % every == 0 and micro < micro_per_epoch) or stop_now:
                    check_losses()
                    sums["seconds"] += time.perf_counter() - epoch_started
                    epoch_started = time.perf_counter()
                    trained_before = int(sums["count"])
                    checkpoint(epoch, micro, sums, order)
                if stop_now:
                    shown.close()
                    status("interrupted")
                    raise Interrupted(
                        f"stopped at step {global_step} (epoch {epoch + 1}); a checkpoint was "
                        f"written: continue with `cnnlab train --resume {run.path}`")
            check_losses()

            train_seconds = float(sums["seconds"]) + time.perf_counter() - epoch_started
            trained = int(sums["count"])
            val = evaluate(model, assembly.eval_batches("val"), runtime, num_classes)
            record = {
                "epoch": epoch + 1,
                "step": global_step,
                "train_loss": float(sums["loss"]) / max(trained, 1),
                "train_acc": int(sums["correct"]) / max(trained, 1),
                "val_loss": val["loss"],
                "val_acc": val["acc"],
            }
            if "top5" in val:
                record["val_top5"] = val["top5"]
            record.update({
                "lr": schedule.lr(max(global_step - 1, 0)),
                "images_per_s": trained / max(train_seconds, 1e-9),
                "train_seconds": train_seconds,
                "seconds": time.perf_counter() - started,
            })
            history.append(record)
            if not best or record["val_acc"] > best["val_acc"]:
                best = {"val_acc": record["val_acc"], "epoch": epoch + 1}
                run.checkpoints.mkdir(parents=True, exist_ok=True)
                save_weights(model, run.best_weights, {"weights": "best",
                                                       "epoch": str(epoch + 1)})
            schedule.observe(record)
            run.append_metrics(record)
            shown.epoch(record)

            epoch, micro_start, sums, order = epoch + 1, 0, None, None
            checkpoint(epoch, 0, _zero_sums("cpu"), None)
            status("running")

    extra = {}
    if not assembly.data.val_is_test:
        test = evaluate(model, assembly.eval_batches("test"), runtime, num_classes)
        extra = {f"test_{k}": v for k, v in test.items()}
    save_weights(model, run.final_weights, {"weights": "final", "epoch": str(epoch)})
    summary = status("completed", extra)
    shown.close()
    return summary


def _zero_sums(device: torch.device) -> dict:
    return {"loss": torch.zeros((), dtype=torch.float64, device=device),
            "correct": torch.zeros((), dtype=torch.long, device=device),
            "count": torch.zeros((), dtype=torch.long, device=device),
            "seconds": torch.zeros((), dtype=torch.float64)}
