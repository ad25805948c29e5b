"""The activation cnnlab traces after each weight layer of a model it did not build, and the
init gain that follows from it: examples/my_nets.py (F.relu in its forward) and torchvision's
resnet18 (nn.ReLU modules, shared by the two convolutions of a block and the shortcut).

    PYTHONPATH=src python examples/trace_demo.py
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import torch
import torchvision
from pydantic import TypeAdapter

from cnnlab.activation_trace import trace
from cnnlab.components.activations import ActivationSpec
from cnnlab.errors import UserError
from cnnlab.foreign_model import prepare_foreign_model, traced_gains


def load_my_nets():
    path = Path(__file__).with_name("my_nets.py")
    spec = importlib.util.spec_from_file_location("my_nets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def show(title: str, model: torch.nn.Module, images: torch.Tensor,
         only: tuple[str, ...] | None = None) -> None:
    """Each weight layer's traced activation and gain (`only`: these layers, then the count of
    each activation over all of them)."""
    traced = trace(model, images)
    labels, gains = traced.labels(), traced_gains(traced)
    print(f"{title}: {len(labels)} weight layers")
    for name in labels:
        if only is None or name in only:
            print(f"  {name:<24} {labels[name]:<12} gain {gains[name]:.4f}")
    if only is not None:
        counts = Counter(labels.values())
        print("  all layers: " + ", ".join(f"{k} x{v}" for k, v in counts.most_common()))


def main() -> None:
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    my_nets = load_my_nets()
    show("examples/my_nets.py SmallNet", my_nets.build(3, 10), images)
    show("torchvision resnet18", torchvision.models.resnet18(weights=None, num_classes=10),
         images, only=("conv1", "layer2.0.conv1", "layer2.0.conv2", "layer2.0.downsample.0",
                       "fc"))
    # Hardswish and ReLU blocks, linear bottlenecks and hard-sigmoid squeeze-excitation gates.
    show("torchvision mobilenet_v3_small", torchvision.models.mobilenet_v3_small(weights=None),
         images, only=("features.1.block.0.0", "features.1.block.1.fc2", "features.1.block.2.0",
                       "features.4.block.0.0"))
    gelu = TypeAdapter(ActivationSpec).validate_python("gelu")
    try:
        prepare_foreign_model(my_nets.build(3, 10), init=None, activation=gelu, norm=None,
                              example_input=images, generator=torch.Generator())
    except UserError as error:
        print(f"model.activation=gelu on SmallNet: {error}")


if __name__ == "__main__":
    main()
