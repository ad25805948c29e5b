"""Signal propagation at initialization: what one batch does to every layer before step 0.

One forward and one backward pass on a batch of training images (no augmentation, batch norm in
training mode as at the first step) record, per layer in execution order: output mean and std,
the fraction of dead units and saturated inputs for activations (each activation's own
definition), the gradient at the layer's output (per-element std and per-sample norm) and the
weight-gradient norm. A verdict names the first kind of trouble found, whether the forward signal
or the backward gradient shows it, the layer where it starts and what to change from the
configured init, activation and normalization.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.activation_trace import trace_activations
from cnnlab.components.init import WEIGHT_TYPES
from cnnlab.components.kinds import kinded_modules, layer_kind
from cnnlab.components.norms import is_norm
from cnnlab.components.torch_activations import out_of_place
from cnnlab.unit_health import dead_fraction, is_dead, is_saturated, saturated_fraction
from cnnlab.models.foreign import ForeignModel

# A signal that shrinks or grows by more than this factor across the hidden weight layers is called
# vanishing or exploding: forward, the output std of a layer against the input images' std;
# backward, the per-sample gradient norm at a layer's output against the last hidden weight
# layer's. The factor comes from `examples/inspect_calibration.py` (README, "Signal at init"):
# on digits, plain-20 with kaiming_normal loses 12x forward (zero padding on 4x4 maps) and still
# trains to 0.70 in 4 epochs, while plain-30 (24x) and plain-6 with xavier_normal (40x) stay near
# chance; 16 lies between the largest loss of a net that trained and the smallest of one that did
# not. The textbook 10 would call that plain-20 vanishing.
RATIO_LIMIT = 16.0

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
    grad_norm: float | None = None
    weight_grad_norm: float | None = None
    weight_std: float | None = None
    init: str | None = None
    rule: str | None = None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def per_sample_norm(grad: torch.Tensor) -> float:
    """Root-mean-square over the batch of each sample's gradient norm (all channels and positions
    of the layer's output), for the loss of that sample alone.

    The backward verdict is judged on this, not on the per-element std. Pooling and a flattening
    head spread the gradient of one feature over the H x W positions that feed it, so a layer
    with H x W positions gets per-element gradients sqrt(H x W) to H x W times smaller even when
    its weights get a full-sized update (their gradient sums over those positions). Summed over
    positions, the head's factor is shared by every layer in front of it, and stride-2
    convolutions and max pooling keep the norm, so the first/last ratio of a net does not move
    with the image size (the quickstart net: about 1.2 to 1.5 at 8x8 ... 64x64, where the
    per-element std ratio fell from 0.3 to 0.05). The mean loss over the batch divides every
    sample's gradient by the batch size; multiplying it back makes the number batch-free."""
    per_sample = grad.reshape(grad.shape[0], -1) * grad.shape[0] if grad.dim() > 0 else grad
    if per_sample.dim() < 2:
        return float(per_sample.abs().mean())
    return float(per_sample.square().sum(dim=1).mean().sqrt())


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
                stats.saturated = float(saturated_fraction(mod, x))
                stats.dead = float(dead_fraction(mod, x))
            records.setdefault(name, stats)
            outputs[name] = output
            if output.requires_grad:
                output.register_hook(lambda g: grads.__setitem__(name, g.detach().float()))
        return hook

    layers = kinded_modules(model)
    for name, _, module in layers:
        handles.append(module.register_forward_hook(forward_hook(name, module)))
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    was_training = model.training
    model.train()
    model.zero_grad(set_to_none=True)
    try:
        with out_of_place(module for _, _, module in layers):
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
            stats.grad_norm = _finite(per_sample_norm(grads[name]))
        weight = getattr(modules[name], "weight", None)
        if isinstance(weight, torch.Tensor) and stats.kind in ("conv", "linear"):
            stats.weight_std = float(weight.detach().float().std())
            if weight.grad is not None:
                stats.weight_grad_norm = _finite(float(weight.grad.float().norm()))
    model.zero_grad(set_to_none=True)
    return list(records.values()), symmetric_layer(model, images, labels)


def input_std(images: torch.Tensor) -> float:
    """The std of the (normalized) input batch: the forward verdict's reference."""
    return float(images.detach().float().std())


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


@dataclass
class Setup:
    """What the config chose, so that advice names a change from it (None: not known)."""
    init: str | None = None
    activation: str | None = None
    norm: str | None = None
    # False for a network cnnlab did not build: its architecture is not a config key, and it may
    # have shortcuts already (torchvision's resnets do), so the advice does not name resnet20.
    built_in: bool = True


# Inits whose scale follows the layer's fan and the activation's gain (or data, for LSUV).
GAIN_MATCHED_INITS = {"kaiming_normal", "kaiming_uniform", "orthogonal", "lsuv", "fixup"}
SELU_INITS = {"lecun_normal", "lecun_uniform"}
SATURATING = {"sigmoid", "hard_sigmoid", "tanh"}


def _init_matches(setup: Setup) -> bool:
    if setup.activation == "selu":
        return setup.init in SELU_INITS | {"lsuv"}
    return setup.init in GAIN_MATCHED_INITS


def _scaled_init(setup: Setup) -> str:
    if setup.activation is None:
        return "an init scaled to the layer (kaiming_normal for relu, lecun_normal for selu)"
    name = "lecun_normal" if setup.activation == "selu" else "kaiming_normal"
    return f"model.init={name} (scaled to the layer and to {setup.activation})"


def _other_activation(setup: Setup) -> str:
    return "a non-saturating activation (model.activation=" + (
        "leaky_relu" if setup.activation == "relu" else "relu") + ")"


def _scale_advice(kind: str, setup: Setup, depth: int) -> str:
    """What to change when a signal vanishes or explodes, never what is already configured; when
    init, activation and norm are already right, say so and where the decay comes from."""
    changes = []
    if setup.init is None or not _init_matches(setup):
        changes.append(_scaled_init(setup))
    if kind == "vanishing" and (setup.activation is None or setup.activation in SATURATING):
        changes.append(_other_activation(setup))
    if setup.norm is None or setup.norm == "none":
        changes.append("normalization (model.norm=batch)")
    already = ""
    if kind == "vanishing" and setup.activation in SATURATING:
        already = (f"{setup.activation}'s derivative is below 1 almost everywhere, so the gradient "
                   "shrinks at every layer; ")
    elif setup.init is not None and _init_matches(setup) and kind == "vanishing":
        already = (f"{setup.init} already suits {setup.activation}, so the decay comes from depth "
                   f"({depth} weight layers), zero padding on small maps, pooling and the loss "
                   "at init; ")
    elif setup.init is not None and _init_matches(setup):
        already = (f"{setup.init} already suits {setup.activation}, so the growth comes from depth "
                   f"({depth} weight layers) compounding each layer's excess gain; ")
    changes.append("shortcuts (model.arch=resnet20) or fewer layers" if setup.built_in
                   else "fewer layers, or shortcuts where the network has none")
    return already + "try " + ", ".join(changes[:-1] + ["or " + changes[-1]] if len(changes) > 1
                                         else changes)


def _advice(kind: str, setup: Setup, depth: int, **facts) -> str:
    if kind == "healthy":
        return (f"forward output std (against the input's) and backward per-sample gradient "
                f"norm stay within a factor of {RATIO_LIMIT:g} across the hidden weight layers")
    if kind == "symmetric":
        return (f"every unit of {facts['layer']} starts identical and gets the same update, so "
                f"they stay identical; use a random init such as {_scaled_init(setup)}")
    if kind == "dead":
        others = [a for a in ("leaky_relu", "gelu") if a != setup.activation]
        init = [] if _init_matches(setup) else [_scaled_init(setup)]
        return (f"{facts['fraction']:.0%} of the units of {facts['layer']} output nothing for the "
                f"whole batch; use {' or '.join(others)}, a bias init that is not negative"
                + "".join(f", or {i}" for i in init))
    if kind == "saturated":
        changes = ["a smaller init" + ("" if _init_matches(setup) else f" such as "
                                       f"{_scaled_init(setup)}")]
        if setup.norm is None or setup.norm == "none":
            changes.append("normalization (model.norm=batch)")
        changes.append(_other_activation(setup))
        return (f"{facts['fraction']:.0%} of the inputs of {facts['layer']} sit where its "
                f"derivative is below 1e-2; use " + ", ".join(changes[:-1]) + " or " + changes[-1])
    if facts.get("non_finite"):
        what = f"the forward signal is not finite at {facts['layer']}"
    elif facts.get("zero"):
        what = f"forward: the first weight layer {facts['first']} outputs 0 for every input"
    elif facts["direction"] == "forward" and facts.get("input_std"):
        what = (f"forward: the output std of {facts['layer']} is {facts['ratio']:.2g}x the std "
                f"of the input images")
    elif facts["direction"] == "forward":
        what = (f"forward: the output std of {facts['layer']} is {facts['ratio']:.2g}x that of "
                f"the first weight layer {facts['first']}")
    else:
        what = (f"backward: the per-sample loss gradient at {facts['layer']} is "
                f"{facts['ratio']:.2g}x its norm at the last hidden weight layer {facts['last']}")
    return what + "; " + _scale_advice(kind, setup, depth)


def _carried_gradients(layers: list[LayerStats]) -> dict[str, float | None]:
    """Each weight layer's per-sample gradient norm as the backward verdict judges it: at the
    output of the norm layer that directly follows it (in forward order), when one does. Behind
    a batch norm the gradient at a conv's own output scales with 1 / the conv's weight scale,
    which the network's function ignores: torchvision's fan_out init of a ResNet's first conv
    (4.6x smaller than fan_in) made it 24x the last layer's there, and that network trained as
    well as with fan_in. The norm's output gradient does not depend on that scale."""
    carried: dict[str, float | None] = {}
    for index, stats in enumerate(layers):
        if stats.kind not in ("conv", "linear"):
            continue
        following = layers[index + 1] if index + 1 < len(layers) else None
        use_norm = following is not None and following.kind == "norm"
        carried[stats.name] = following.grad_norm if use_norm else stats.grad_norm
    return carried


def verdict(layers: list[LayerStats], symmetric: str | None, setup: Setup | None = None,
            input_std: float | None = None) -> dict:
    """The first kind of trouble found. Forward, each hidden weight layer's output std is judged
    against the std of the input images (`input_std`; without it, against the first weight
    layer's output): an init that loses signal in the very first layer (xavier's 1/fan_in under
    relu, a fixed small std) then counts, which the calibration showed decides whether a net
    trains. Backward, the per-sample gradient norm is judged against the last hidden layer's."""
    setup = setup or Setup()
    weight_layers = [s for s in layers if s.kind in ("conv", "linear")]
    body = weight_layers[:-1] if len(weight_layers) > 1 else weight_layers  # not the classifier
    # A layer initialized to exactly zero (the end of a Fixup or zero-init residual branch)
    # outputs zero by design while the shortcut carries the signal: it says nothing about decay.
    body = [s for s in body if s.weight_std != 0.0] or body
    first = body[0] if body else None
    last = body[-1] if body else None

    forward_ratio = backward_ratio = backward_std_ratio = forward_input_ratio = None
    if first is not None and first.std > 0:
        forward_ratio = last.std / first.std
    if last is not None and input_std:
        forward_input_ratio = last.std / input_std
    carried = _carried_gradients(layers)
    if first is not None and carried.get(last.name):
        backward_ratio = (carried.get(first.name) or 0.0) / carried[last.name]
    if first is not None and last.grad_std:
        backward_std_ratio = (first.grad_std or 0.0) / last.grad_std

    def result(kind: str, layer: str | None, direction: str | None = None, **facts) -> dict:
        advice = _advice(kind, setup, len(weight_layers), layer=layer, direction=direction,
                         first=first.name if first else None, last=last.name if last else None,
                         input_std=input_std, **facts)
        return {"verdict": kind, "layer": layer, "direction": direction, "advice": advice,
                "forward_ratio": forward_ratio, "forward_input_ratio": forward_input_ratio,
                "backward_ratio": backward_ratio, "backward_std_ratio": backward_std_ratio,
                "ratio_limit": RATIO_LIMIT}

    if symmetric is not None:
        return result("symmetric", symmetric)
    non_finite = next((s for s in layers if not math.isfinite(s.std)), None)
    if non_finite is not None:
        return result("exploding", non_finite.name, "forward", non_finite=True)
    for s in layers:
        if s.kind == "activation" and s.dead is not None and is_dead(s.dead):
            return result("dead", s.name, "forward", fraction=s.dead)
    for s in layers:
        if s.kind == "activation" and s.saturated is not None and is_saturated(s.saturated):
            return result("saturated", s.name, "forward", fraction=s.saturated)
    reference, judged = (input_std, body) if input_std else (
        first.std if first is not None else 0.0, body[1:])
    if reference > 0:
        for s in judged:
            ratio = s.std / reference
            if ratio < 1 / RATIO_LIMIT:
                return result("vanishing", s.name, "forward", ratio=ratio)
            if ratio > RATIO_LIMIT:
                return result("exploding", s.name, "forward", ratio=ratio)
    if first is not None and first.std == 0:
        return result("vanishing", first.name, "forward", ratio=0.0, zero=True)
    if backward_ratio is not None:
        # Backward the trouble starts at the last layer and shows up towards the first.
        for s in reversed(body[:-1]):
            if carried.get(s.name) is None:
                continue
            ratio = carried[s.name] / carried[last.name]
            if ratio < 1 / RATIO_LIMIT:
                return result("vanishing", s.name, "backward", ratio=ratio)
            if ratio > RATIO_LIMIT:
                return result("exploding", s.name, "backward", ratio=ratio)
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
    setup, shown = configured_setup(assembly.cfg.model, assembly.model, x[:2])
    report = verdict(layers, symmetric, setup, input_std(x))
    report.update({
        "name": assembly.cfg.name,
        "arch": assembly.cfg.model.arch,
        **shown,
        "batch": count,
        "layers": [asdict(s) for s in layers],
    })
    return report


# A norm module's class -> the model.norm name the advice speaks of.
NORM_NAMES = {"BatchNorm": "batch", "SyncBatchNorm": "batch", "GroupNorm": "group",
              "LayerNorm": "layer", "InstanceNorm": "instance"}


def configured_setup(model_cfg, model: nn.Module, example: torch.Tensor
                     ) -> tuple[Setup, dict]:
    """The advice's Setup and the report's activation/norm/init fields. A choice the config
    leaves to the model (None: a foreign model's own, see `cnnlab.foreign_model`) is read from
    the model: the activations traced after its layers (also shown per layer, under
    "activations"), its norm modules' types, and "the model's own" init."""
    activation = getattr(model_cfg, "activation", None)
    norm = getattr(model_cfg, "norm", None)
    init = getattr(model_cfg, "init", None)
    setup = Setup(init.default.name if init is not None else None,
                  activation.name if activation is not None else None,
                  norm.name if norm is not None else None,
                  built_in=not isinstance(model_cfg, ForeignModel))
    shown = {"activation": setup.activation, "norm": setup.norm, "init": setup.init}
    if activation is None:
        traced = trace_activations(model, example)
        shown["activations"] = traced
        counts = Counter(v for v in traced.values() if v not in ("linear", "unknown"))
        setup.activation = counts.most_common(1)[0][0].split("(")[0] if counts else None
        shown["activation"] = (", ".join(counts) if counts else "none") + " (traced)"
    if norm is None:
        kinds = sorted({type(m).__name__ for m in model.modules() if is_norm(m)})
        setup.norm = next((name for prefix, name in NORM_NAMES.items()
                           if any(k.startswith(prefix) for k in kinds)), "none")
        shown["norm"] = (", ".join(kinds) or "none") + " (the model's own)"
    if init is None:
        shown["init"] = "the model's own"
    return setup, shown


def inspect(cfg, batch_size: int = 256, model: object = None, *, data=None) -> dict:
    """`cnnlab inspect`: build the configured model and data, and report the signal at init.
    `model`: your own network (an nn.Module, deep-copied, or a factory). `data`: data given in
    Python instead of the config's (see cnnlab.data.python_data)."""
    from cnnlab.assemble import assemble
    from cnnlab.data.python_data import use_data
    from cnnlab.model_arg import with_model

    cfg, given = use_data(cfg, data)
    cfg, supplied = with_model(cfg, model)
    return inspect_assembly(assemble(cfg, supplied=supplied, given=given), batch_size)
