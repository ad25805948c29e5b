"""Signal propagation at initialization: what one batch does to every layer before step 0.

One forward and one backward pass on a batch of training images (no augmentation, batch norm in
training mode as at the first step) record, per layer in execution order: output mean and std,
the fraction of dead units and saturated inputs for activations (each activation's own
definition), the gradient std at the layer's output and the weight-gradient norm. A verdict names
the first kind of trouble found, the layer where it starts and what to change.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.components.init import WEIGHT_TYPES
from cnnlab.components.kinds import layer_kind

# A signal that shrinks or grows by more than this factor between the first weight layer and the
# last (forward: output std; backward: gradient std) is called vanishing or exploding.
RATIO_LIMIT = 10.0
# Over half of an activation layer's units dead, or of its inputs saturated, is called so.
DEAD_LIMIT = 0.5
SATURATED_LIMIT = 0.5

ADVICE = {
    "symmetric": "every unit of {layer} starts identical and gets the same update, so they stay "
                 "identical; use a random init such as kaiming_normal",
    "vanishing": "the signal shrinks by {ratio:.2g}x from the first weight layer to {layer}; use "
                 "an init scaled to the layer (kaiming_normal for relu, lecun_normal for selu), "
                 "a non-saturating activation, or normalization",
    "exploding": "the signal grows by {ratio:.2g}x from the first weight layer to {layer}; use an "
                 "init scaled to the layer (kaiming_normal, xavier_normal) or normalization",
    "dead": "{fraction:.0%} of the units of {layer} output nothing for the whole batch; use "
            "leaky_relu/gelu, a smaller negative bias, or an init scaled to the layer",
    "saturated": "{fraction:.0%} of the inputs of {layer} sit where its derivative is below 1e-2; "
                 "use a smaller init, normalization, or a non-saturating activation",
    "healthy": "forward and backward signals stay within a factor of {limit:g} across depth",
}


@dataclass
class LayerStats:
    name: str
    kind: str  # conv, linear, norm, activation
    type: str
    mean: float = 0.0
    std: float = 0.0
    dead: float | None = None
    saturated: float | None = None
    grad_std: float | None = None
    weight_grad_norm: float | None = None
    weight_std: float | None = None
    init: str | None = None
    rule: str | None = None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def measure(model: nn.Module, images: torch.Tensor, labels: torch.Tensor
            ) -> tuple[list[LayerStats], str | None]:
    """Per-layer statistics of one forward and backward pass, and the first symmetric layer (if
    any); the model is left unchanged (batch-norm running statistics restored, gradients
    cleared)."""
    records: dict[str, LayerStats] = {}
    outputs: dict[str, torch.Tensor] = {}
    grads: dict[str, torch.Tensor] = {}
    handles = []

    def forward_hook(name: str, module: nn.Module):
        def hook(mod, inputs, output):
            kind = layer_kind(mod)
            stats = LayerStats(name, kind, type(mod).__name__)
            out = output.detach().float()
            stats.mean, stats.std = float(out.mean()), float(out.std())
            if kind == "activation":
                x = inputs[0].detach()
                stats.saturated = float(mod.saturated(x).float().mean())
                units = x.transpose(0, 1).reshape(x.shape[1], -1) if x.dim() > 1 else x[None]
                stats.dead = float(mod.off(units).all(dim=1).float().mean())
            records.setdefault(name, stats)
            outputs[name] = output
            if output.requires_grad:
                output.register_hook(lambda g: grads.__setitem__(name, g.detach().float()))
        return hook

    for name, module in model.named_modules():
        if layer_kind(module) is not None:
            handles.append(module.register_forward_hook(forward_hook(name, module)))
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    was_training = model.training
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        logits = model(images)
        F.cross_entropy(logits.float(), labels).backward()
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
        model.train(was_training)

    modules = dict(model.named_modules())
    for name, stats in records.items():
        if name in grads:
            stats.grad_std = _finite(float(grads[name].std()))
        weight = getattr(modules[name], "weight", None)
        if isinstance(weight, torch.Tensor) and stats.kind in ("conv", "linear"):
            stats.weight_std = float(weight.detach().float().std())
            if weight.grad is not None:
                stats.weight_grad_norm = _finite(float(weight.grad.float().norm()))
    model.zero_grad(set_to_none=True)
    return list(records.values()), symmetric_layer(model, images, labels)


def _identical_units(module: nn.Module) -> bool:
    w = module.weight.detach().flatten(1)
    g = module.weight.grad
    if g is None:
        return False
    g = g.detach().flatten(1)
    return bool((w - w[:1]).abs().max() == 0) and bool((g - g[:1]).abs().max() <= 1e-12)


def symmetric_layer(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    probe_lr: float = 0.1) -> str | None:
    """The first weight layer whose units stay identical (same weights, same gradients) through
    two gradient steps on a copy of the model: such units can never become different.

    One look at step 0 is not enough: Fixup zeroes the classifier, so every other gradient is 0
    at step 0, yet its zero-initialized layers come apart after the first update."""
    probe = copy.deepcopy(model)
    probe.train()
    layers = [(n, m) for n, m in probe.named_modules()
              if isinstance(m, WEIGHT_TYPES) and m.weight.shape[0] > 1]
    candidates = {n for n, _ in layers}
    for _ in range(2):
        probe.zero_grad(set_to_none=True)
        F.cross_entropy(probe(images).float(), labels).backward()
        candidates &= {n for n, m in layers if _identical_units(m)}
        if not candidates:
            return None
        with torch.no_grad():
            for param in probe.parameters():
                if param.grad is not None:
                    param.sub_(probe_lr * param.grad)
    return next(n for n, _ in layers if n in candidates)


def verdict(layers: list[LayerStats], symmetric: str | None) -> dict:
    weight_layers = [s for s in layers if s.kind in ("conv", "linear")]
    body = weight_layers[:-1] if len(weight_layers) > 1 else weight_layers  # not the classifier
    # A layer initialized to exactly zero (the end of a Fixup or zero-init residual branch)
    # outputs zero by design while the shortcut carries the signal: it says nothing about decay.
    body = [s for s in body if s.weight_std != 0.0] or body
    first = body[0] if body else None

    forward_ratio = backward_ratio = None
    if first is not None and first.std > 0:
        forward_ratio = body[-1].std / first.std
    if first is not None and body[-1].grad_std:
        backward_ratio = (first.grad_std or 0.0) / body[-1].grad_std

    def result(kind: str, layer: str | None, **facts) -> dict:
        return {"verdict": kind, "layer": layer, "advice": ADVICE[kind].format(
            layer=layer, limit=RATIO_LIMIT, **facts), "forward_ratio": forward_ratio,
            "backward_ratio": backward_ratio}

    if symmetric is not None:
        return result("symmetric", symmetric)
    non_finite = next((s for s in layers if not math.isfinite(s.std)), None)
    if non_finite is not None:
        return result("exploding", non_finite.name, ratio=math.inf)
    for s in layers:
        if s.kind == "activation" and s.dead is not None and s.dead > DEAD_LIMIT:
            return result("dead", s.name, fraction=s.dead)
    for s in layers:
        if s.kind == "activation" and s.saturated is not None and s.saturated > SATURATED_LIMIT:
            return result("saturated", s.name, fraction=s.saturated)
    if first is not None and first.std > 0:
        for s in body:
            ratio = s.std / first.std
            if ratio < 1 / RATIO_LIMIT:
                return result("vanishing", s.name, ratio=ratio)
            if ratio > RATIO_LIMIT:
                return result("exploding", s.name, ratio=ratio)
    if first is not None and first.std == 0:
        return result("vanishing", first.name, ratio=0.0)
    if backward_ratio is not None:
        # Backward the trouble starts at the last layer and shows up at the first.
        for s in reversed(body):
            if s.grad_std is None:
                continue
            ratio = s.grad_std / body[-1].grad_std
            if ratio < 1 / RATIO_LIMIT:
                return result("vanishing", s.name, ratio=ratio)
            if ratio > RATIO_LIMIT:
                return result("exploding", s.name, ratio=ratio)
    return result("healthy", None)


def inspect_assembly(assembly, batch_size: int = 256) -> dict:
    """The signal-propagation report of an assembled run (see `cnnlab.assemble`)."""
    data = assembly.data
    count = min(batch_size, len(data.train))
    if data.train.in_memory:
        images, labels = data.train.images[:count], data.train.labels[:count]
    else:
        from cnnlab.data.loaders import FileImages

        files = FileImages(data.train)
        pairs = [files[i] for i in range(count)]
        images = torch.stack([p[0] for p in pairs])
        labels = torch.stack([torch.as_tensor(p[1]) for p in pairs])
    device = assembly.runtime.device
    x = assembly.normalizer(images.to(device))
    layers, symmetric = measure(assembly.model, x, labels.to(device))
    by_layer = {a.layer: a for a in assembly.assignments}
    for stats in layers:
        if stats.name in by_layer:
            stats.init, stats.rule = by_layer[stats.name].init, by_layer[stats.name].rule
    report = verdict(layers, symmetric)
    report.update({
        "name": assembly.cfg.name,
        "arch": assembly.cfg.model.arch,
        "activation": assembly.cfg.model.activation.name,
        "norm": assembly.cfg.model.norm.name,
        "init": assembly.cfg.model.init.default.name,
        "batch": count,
        "layers": [asdict(s) for s in layers],
    })
    return report


def inspect(cfg, batch_size: int = 256) -> dict:
    """`cnnlab inspect`: build the configured model and data, and report the signal at init."""
    from cnnlab.assemble import assemble

    return inspect_assembly(assemble(cfg), batch_size)
