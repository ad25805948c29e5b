"""What happens inside the network while it trains, sampled on the steps `cnnlab.sampling`
picks: the first steps, at least 20 per run, and otherwise every `diagnostics.every` steps or
less often when the measured cost would exceed `diagnostics.budget` of the step time.

On a sampled step, forward hooks on every conv, linear, norm and activation layer reduce its
output on the device (mean, std, max |x|, a histogram, and for activations the fraction of dead
units and saturated inputs by the activation's own definition); after the backward pass and the
optimizer update come the weight norm, weight-gradient norm and update-to-weight ratio of every
conv and linear layer and the global gradient norm before clipping. All of it is copied to the
host once per sample. Hooks live only inside `capture()`, which removes them on every exit path.

Histograms cover a signed range per layer that adapts to the data: a power of two at least as
wide as the largest |x| seen, doubling when a sample outgrows it. Samples of a layer therefore
share one nested grid, and the plot maps each onto the widest one.

Alarms are judged on the host after each sample and stored with their step and layer.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from torch import nn

from cnnlab.atomic import replace_atomically
from cnnlab.components.kinds import kinded_modules
from cnnlab.components.torch_activations import out_of_place
from cnnlab.rundir import RunDir
from cnnlab.sampling import BUDGET, Sampling
from cnnlab.unit_health import dead_fraction, is_dead, is_saturated, saturated_fraction

BINS = 64
# Layer statistics read the first images of the sampled batch only: 64 images give each channel
# tens of thousands of values on CIFAR-size maps, and reading whole 512-image batches made a
# sample cost several plain steps on a 2-core CPU (bench/loop_overhead.py).
SAMPLE_IMAGES = 64
PER_LAYER = ("mean", "std", "peak", "finite", "saturated", "dead")  # every hooked layer
PER_WEIGHT = ("weight_norm", "grad_norm", "update_ratio")  # conv and linear layers

# Alarm thresholds; see the comment on each check in `Diagnostics._judge`. Dead and saturated
# are judged as `cnnlab inspect` judges them (`cnnlab.unit_health`).
VANISHING_RATIO = 1e-3
VANISHING_SAMPLES = 3
EXPLODING_GROWTH = 10.0
UPDATE_RATIO_LOW, UPDATE_RATIO_HIGH = 1e-5, 1e-1
# Update ratios are judged after warmup and while the LR is at least this share of its peak: in a
# warmup or at the end of a cosine schedule, small updates are intended.
UPDATE_RATIO_MIN_LR_SHARE = 0.1


class _SampleFields(TypedDict):
    step: int
    lr: float
    # PER_LAYER, one value per hooked layer (index: position in `Diagnostics.layers`); NaN where
    # a layer has no such statistic (dead and saturated outside activations).
    mean: np.ndarray
    std: np.ndarray
    peak: np.ndarray
    finite: np.ndarray  # 1.0 where every image's output was finite
    saturated: np.ndarray
    dead: np.ndarray
    hist: np.ndarray  # (layers, BINS) counts over [-range, range]
    range: np.ndarray  # the histogram half-range of each layer
    # PER_WEIGHT, one value per conv and linear layer (index: position in
    # `Diagnostics.weighted`).
    weight_norm: np.ndarray
    grad_norm: np.ndarray
    update_ratio: np.ndarray
    global_grad_norm: float


class Sample(_SampleFields, total=False):
    """One sample's statistics by name, as kept in `Diagnostics.records` and stored, one
    array per name, in diagnostics.npz."""

    grad_finite: np.ndarray  # per weight layer; judged when taken, neither stored nor reloaded


@dataclass
class Layer:
    name: str
    kind: str
    module: nn.Module


class Diagnostics:
    def __init__(self, model: nn.Module, every: int, max_samples: int = 2000,
                 explode_threshold: float = 1e3, total_steps: int | None = None,
                 budget: float | None = BUDGET):
        self.sampling = Sampling(every, total_steps, budget)
        self.max_samples = max_samples
        self.explode_threshold = explode_threshold
        self.layers = [Layer(n, k, m) for n, k, m in kinded_modules(model)]
        self.weighted = [i for i, layer in enumerate(self.layers) if layer.kind in ("conv",
                                                                                   "linear")]
        self.ranges = [0.0] * len(self.layers)  # histogram half-range per layer (0: unknown)
        self.records: list[Sample] = []
        self.alarms: list[dict] = []
        self._open: dict[str, tuple[int, int]] = {}  # alarm key -> (start step, count)
        self._vanishing_streak = 0
        self._previous_grad_norm: float | None = None
        self._pending: dict | None = None

    # --------------------------------------------------------------------------- sampling

    @property
    def every(self) -> int:
        """The interval between samples now in effect."""
        return self.sampling.interval

    def want(self, step: int) -> bool:
        return self.sampling.want(step)

    @contextmanager
    def capture(self):
        """Forward hooks for one sampled step; always removed, errors included."""
        outputs: list[dict | None] = [None] * len(self.layers)
        handles = []
        for index, layer in enumerate(self.layers):
            handles.append(layer.module.register_forward_hook(self._hook(index, outputs)))
        try:
            with out_of_place(layer.module for layer in self.layers):
                yield
        finally:
            for handle in handles:
                handle.remove()
        self._pending = {"outputs": outputs}

    def _hook(self, index: int, outputs: list):
        layer = self.layers[index]

        @torch.no_grad()
        def hook(module, inputs, output):
            if outputs[index] is not None or not torch.is_tensor(output):
                return  # a module called twice in one pass: keep its first call
            finite = torch.isfinite(output).all()  # every image: a NaN anywhere counts
            x = output.detach()[:SAMPLE_IMAGES].float()
            peak = x.abs().max()
            if self.ranges[index] == 0.0:
                # The first sample of a layer needs its range before binning: one sync, once
                # (a non-finite first output leaves it unknown until a finite one comes).
                first_peak = float(peak)
                if math.isfinite(first_peak):
                    self.ranges[index] = 2.0 ** math.ceil(math.log2(max(first_peak, 1e-12)))
            bound = self.ranges[index] or 1.0
            stats = {"mean": x.mean(), "std": x.std(), "peak": peak,
                     "finite": finite,
                     "hist": torch.histc(x.nan_to_num(), BINS, -bound, bound)}
            if layer.kind == "activation":
                pre = inputs[0].detach()[:SAMPLE_IMAGES]
                stats["saturated"] = saturated_fraction(module, pre)
                stats["dead"] = dead_fraction(module, pre)
            outputs[index] = stats

        return hook

    def before_update(self, model: nn.Module) -> None:
        """After backward, before clipping and the optimizer: gradient and weight norms."""
        if self._pending is None:
            return
        weights, grads, finite, previous = [], [], [], []
        for index in self.weighted:
            module = self.layers[index].module
            weights.append(module.weight.detach().float().norm())
            grad = module.weight.grad
            # Norms in float64: float32 squares overflow from gradients of ~1e19 on, which is
            # exploding, not non-finite; finiteness is read from the gradient itself.
            grads.append(_wide_norm(grad.detach()).float() if grad is not None
                         else torch.zeros((), device=module.weight.device))
            finite.append(torch.isfinite(grad).all() if grad is not None
                          else torch.ones((), dtype=torch.bool, device=module.weight.device))
            previous.append(module.weight.detach().clone())
        # The global norm is the one gradient clipping sees: every parameter, biases and norm
        # scales included.
        every_grad = [p.grad.detach() for p in model.parameters() if p.grad is not None]
        total = (_wide_norm(torch.stack([_wide_norm(g) for g in every_grad])) if every_grad
                 else torch.zeros(()))
        self._pending.update(weights=weights, grads=grads, grad_finite=finite, previous=previous,
                             total=total)

    def after_update(self, step: int, lr: float, judge_updates: bool) -> list[dict]:
        """After the optimizer step: update ratios, one copy to the host, alarms. Returns the
        alarms raised at this sample."""
        pending, self._pending = self._pending, None
        if pending is None:
            return []
        updates = [(self.layers[i].module.weight.detach().float() - before.float()).norm()
                   for i, before in zip(self.weighted, pending["previous"])]
        outputs = pending["outputs"]
        device = updates[0].device if updates else torch.device("cpu")
        missing = torch.full((), float("nan"), device=device)
        empty_hist = torch.zeros(BINS, device=device)
        on_device = {name: _stack([stats[name] if stats and name in stats else missing
                                   for stats in outputs], device)
                     for name in PER_LAYER}
        on_device.update(
            hist=_stack([stats["hist"] if stats else empty_hist for stats in outputs], device,
                        (BINS,)),
            weight_norm=_stack(pending["weights"], device),
            grad_norm=_stack(pending["grads"], device),
            update_norm=_stack(updates, device),
            grad_finite=_stack(pending["grad_finite"], device),
            global_grad_norm=pending["total"].reshape(()))
        host = _to_host(on_device, device)
        with np.errstate(invalid="ignore", divide="ignore"):  # NaN weights: a NaN ratio
            ratios = host["update_norm"] / np.maximum(host["weight_norm"], 1e-12)
        record: Sample = {
            "step": step, "lr": lr,
            **{name: host[name] for name in PER_LAYER},
            "hist": host["hist"], "range": np.asarray(self.ranges, np.float32),
            "weight_norm": host["weight_norm"], "grad_norm": host["grad_norm"],
            "update_ratio": ratios, "grad_finite": host["grad_finite"] > 0.5,
            "global_grad_norm": float(host["global_grad_norm"]),
        }
        # A layer that outgrew its range widens it for the next samples.
        for index, peak in enumerate(record["peak"]):
            while math.isfinite(peak) and peak > self.ranges[index] > 0:
                self.ranges[index] *= 2.0
        self.records.append(record)
        self.sampling.taken(step)
        self._thin()
        return self._judge(record, judge_updates)

    def _thin(self) -> None:
        """Memory stays bounded: past `max_samples`, keep every other sample and sample half
        as often from now on."""
        if len(self.records) > self.max_samples:
            self.records = self.records[::2]
            self.sampling.thin()

    # ----------------------------------------------------------------------------- alarms

    def _raise(self, kind: str, layer: str | None, step: int, detail: str, active: bool,
               raised: list) -> None:
        """Record an alarm when a condition starts; it is not repeated while it persists."""
        key = f"{kind}:{layer}"
        if active and key not in self._open:
            self._open[key] = (step, 1)
            alarm = {"kind": kind, "layer": layer, "step": step, "detail": detail}
            self.alarms.append(alarm)
            raised.append(alarm)
        elif not active:
            self._open.pop(key, None)

    def _judge(self, record: Sample, judge_updates: bool) -> list[dict]:
        raised: list[dict] = []
        step = record["step"]
        names = [layer.name for layer in self.layers]

        # non_finite: the first layer (in forward order) whose output is not finite, else the
        # first whose weight gradient is not.
        bad_output = next((names[i] for i, ok in enumerate(record["finite"]) if ok < 1), None)
        bad_grad = next((self.layers[i].name for i, ok in zip(self.weighted,
                                                              record["grad_finite"]) if not ok),
                        None)
        culprit = bad_output or bad_grad
        self._raise("non_finite", culprit, step,
                    f"{'output' if bad_output else 'gradient'} of {culprit} is not finite",
                    culprit is not None, raised)

        # exploding: the global gradient norm is huge or grew 10x since the last sample.
        norm = record["global_grad_norm"]
        growth = (norm / self._previous_grad_norm if self._previous_grad_norm else 1.0)
        # An infinite norm from finite gradients (beyond float32) is exploding too; non-finite
        # gradients are the non_finite alarm's.
        exploding = culprit is None and (norm > self.explode_threshold or
                                         growth > EXPLODING_GROWTH)
        self._raise("exploding", None, step, f"global gradient norm {norm:.3g} (x{growth:.3g} "
                    "since the last sample)", exploding, raised)
        if math.isfinite(norm) and norm > 0:
            self._previous_grad_norm = norm

        # vanishing: the first quarter of the weight layers gets under 1e-3 of the gradient
        # norm of the last quarter, several samples in a row.
        grads = record["grad_norm"]
        quarter = max(1, len(grads) // 4)
        early, late = float(np.mean(grads[:quarter])), float(np.mean(grads[-quarter:]))
        ratio = early / late if late > 0 else 1.0
        self._vanishing_streak = self._vanishing_streak + 1 if ratio < VANISHING_RATIO else 0
        first = self.layers[self.weighted[0]].name if self.weighted else None
        self._raise("vanishing", first, step, f"gradient norm of the first layers is {ratio:.2g}"
                    f" of the last layers' for {self._vanishing_streak} samples",
                    self._vanishing_streak >= VANISHING_SAMPLES, raised)

        for index, layer in enumerate(self.layers):
            if layer.kind != "activation":
                continue
            dead, saturated = record["dead"][index], record["saturated"][index]
            self._raise("dead", layer.name, step, f"{dead:.0%} of its units output nothing for "
                        "the whole batch", is_dead(dead), raised)
            self._raise("saturated", layer.name, step, f"{saturated:.0%} of its inputs are "
                        "saturated", is_saturated(saturated), raised)

        if judge_updates:
            for index, ratio in zip(self.weighted, record["update_ratio"]):
                name = self.layers[index].name
                off = math.isfinite(ratio) and not (UPDATE_RATIO_LOW <= ratio <= UPDATE_RATIO_HIGH)
                self._raise("update_ratio", name, step, f"|dw|/|w| = {ratio:.2g} (usual ~1e-3)",
                            off, raised)
        return raised

    def probe_non_finite(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                         step: int, loss_fn) -> dict | None:
        """After a non-finite loss: one more forward and backward on the batch with hooks, to
        name the first layer whose output (or gradient) is not finite."""
        with self.capture():
            loss = loss_fn(model(images), labels)
        model.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
        outputs = self._pending["outputs"]
        self._pending = None
        names = [layer.name for layer in self.layers]
        culprit = next((names[i] for i, s in enumerate(outputs) if s and not bool(s["finite"])),
                       None)
        kind = "output"
        if culprit is None:
            culprit = next((self.layers[i].name for i in self.weighted
                            if self.layers[i].module.weight.grad is not None
                            and not torch.isfinite(self.layers[i].module.weight.grad).all()),
                           None)
            kind = "gradient"
        model.zero_grad(set_to_none=True)
        alarm = {"kind": "non_finite", "layer": culprit, "step": step,
                 "detail": f"loss is not finite; first non-finite {kind}: {culprit}"}
        self.alarms.append(alarm)
        return alarm

    # ------------------------------------------------------------------------ bookkeeping

    def time_step(self, sampled: bool, seconds: float) -> None:
        self.sampling.time_step(sampled, seconds)

    def overhead(self) -> dict:
        """Cost of sampling measured in this run (see `cnnlab.sampling`): the extra seconds of
        the sampled steps as a share of the timed steps' time without sampling."""
        return self.sampling.overhead()

    def state_dict(self) -> dict:
        return {"ranges": list(self.ranges), "alarms": list(self.alarms),
                "open": {k: list(v) for k, v in self._open.items()},
                "streak": self._vanishing_streak, "previous": self._previous_grad_norm,
                "sampling": self.sampling.state_dict(), "samples": len(self.records)}

    def load_state_dict(self, state: dict, folder: Path) -> None:
        self.ranges = list(state["ranges"])
        self.alarms = list(state["alarms"])
        self._open = {k: tuple(v) for k, v in state["open"].items()}
        self._vanishing_streak = state["streak"]
        self._previous_grad_norm = state["previous"]
        self.records = load_records(folder)[: state["samples"]]
        if "sampling" in state:
            self.sampling.load_state_dict(state["sampling"])
        else:  # a checkpoint from before adaptive sampling: its interval and timings
            self.sampling.interval = max(1, min(state["every"], self.sampling.widest))
            self.sampling.times = {k: list(v) for k, v in state["times"].items()}
            self.sampling.last = self.records[-1]["step"] if self.records else -1

    def save(self, folder: Path, summary: dict | None = None) -> None:
        """Arrays to diagnostics.npz, alarms and layer names to diagnostics.json (atomically)."""
        arrays = records_to_arrays(self.records, self.layers, self.weighted)
        run = RunDir.at(folder)
        replace_atomically(run.diagnostics_path,
                           lambda handle: np.savez_compressed(handle, **arrays))
        meta = {"layers": [{"name": l.name, "kind": l.kind} for l in self.layers],
                "weighted": [self.layers[i].name for i in self.weighted],
                "every": self.every, "bins": BINS, "alarms": self.alarms,
                "overhead": self.overhead()}
        meta.update(summary or {})
        replace_atomically(run.diagnostics_meta_path,
                           json.dumps(meta, indent=1, default=_plain))


def _stack(values: list[torch.Tensor], device: torch.device,
           item_shape: tuple[int, ...] = ()) -> torch.Tensor:
    """The values as one float32 tensor on `device`; empty (0, *item_shape) when there are
    none (a model without conv or linear layers has no weight statistics)."""
    if not values:
        return torch.zeros((0, *item_shape), device=device)
    return torch.stack([value.float().to(device) for value in values])


def _to_host(named: dict[str, torch.Tensor], device: torch.device) -> dict[str, np.ndarray]:
    """Every named tensor as a host array of its own shape, all copied in one transfer: one
    sync per sample instead of one per statistic."""
    flat = torch.cat([tensor.float().to(device).flatten() for tensor in named.values()])
    flat = flat.cpu().numpy()
    arrays, offset = {}, 0
    for name, tensor in named.items():
        # A copy, so that a record does not keep the whole transfer buffer alive.
        arrays[name] = flat[offset: offset + tensor.numel()].reshape(tensor.shape).copy()
        offset += tensor.numel()
    return arrays


def _wide_norm(tensor: torch.Tensor) -> torch.Tensor:
    """The 2-norm accumulated in float64 (float32 on Apple's MPS, which has no float64)."""
    wide = torch.float32 if tensor.device.type == "mps" else torch.float64
    return torch.linalg.vector_norm(tensor, dtype=wide)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value))


def records_to_arrays(records: list[Sample], layers: list[Layer], weighted: list[int]) -> dict:
    count, width = len(records), len(layers)
    arrays = {"step": np.asarray([r["step"] for r in records], np.int64),
              "lr": np.asarray([r["lr"] for r in records], np.float64),
              "global_grad_norm": np.asarray([r["global_grad_norm"] for r in records]),
              "layer_names": np.asarray([l.name for l in layers], dtype=str),
              "layer_kinds": np.asarray([l.kind for l in layers], dtype=str),
              "weighted_names": np.asarray([layers[i].name for i in weighted], dtype=str)}
    for key in PER_LAYER:
        arrays[key] = (np.stack([r[key] for r in records]) if count
                       else np.zeros((0, width), np.float32)).astype(np.float32)
    for key in PER_WEIGHT:
        arrays[key] = (np.stack([r[key] for r in records]) if count
                       else np.zeros((0, len(weighted)), np.float32)).astype(np.float32)
    arrays["hist"] = (np.stack([r["hist"] for r in records]) if count
                      else np.zeros((0, width, BINS), np.float32))
    arrays["range"] = (np.stack([r["range"] for r in records]) if count
                       else np.zeros((0, width), np.float32))
    return arrays


def load_records(folder: Path) -> list[Sample]:
    path = RunDir.at(folder).diagnostics_path
    if not path.exists():
        return []
    with np.load(path, allow_pickle=False) as data:
        count = len(data["step"])
        return [{"step": int(data["step"][i]), "lr": float(data["lr"][i]),
                 "global_grad_norm": float(data["global_grad_norm"][i]),
                 **{k: data[k][i] for k in PER_LAYER + PER_WEIGHT + ("hist", "range")}}
                for i in range(count)]


def diagnose(run_dir: Path) -> dict:
    """`cnnlab diagnose`: a per-layer summary of a run's samples, its alarms and the overhead."""
    from cnnlab.errors import UserError

    run_dir = Path(run_dir)
    run = RunDir.at(run_dir)
    meta_path = run.diagnostics_meta_path
    if not meta_path.exists():
        raise UserError(f"{run_dir} has no diagnostics ({meta_path.name} is missing): it was "
                        "trained with diagnostics.every=0 or is not a run folder")
    meta = json.loads(meta_path.read_text())
    with np.load(run.diagnostics_path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    weighted = {name: i for i, name in enumerate(arrays["weighted_names"].tolist())}
    layers = []
    for index, (name, kind) in enumerate(zip(arrays["layer_names"].tolist(),
                                             arrays["layer_kinds"].tolist())):
        std = arrays["std"][:, index]
        entry = {"name": name, "kind": kind,
                 "std_first": _num(std[0]) if len(std) else None,
                 "std_last": _num(std[-1]) if len(std) else None,
                 "mean_last": _num(arrays["mean"][-1, index]) if len(std) else None}
        if kind == "activation" and len(std):
            entry["dead_max"] = _num(np.nanmax(arrays["dead"][:, index]))
            entry["saturated_max"] = _num(np.nanmax(arrays["saturated"][:, index]))
        if name in weighted and len(std):
            w = weighted[name]
            entry.update(grad_norm_last=_num(arrays["grad_norm"][-1, w]),
                         weight_norm_last=_num(arrays["weight_norm"][-1, w]),
                         update_ratio_median=_num(np.nanmedian(arrays["update_ratio"][:, w])))
        layers.append(entry)
    return {"run": str(run_dir), "samples": int(len(arrays["step"])), "every": meta["every"],
            "steps": arrays["step"].tolist(), "layers": layers, "alarms": meta["alarms"],
            "overhead": meta["overhead"]}


def _num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
