"""A diagnostics sample is read by name, never by position (issue 16, item 7): every record has
exactly the fields `Sample` names, each over the layers it belongs to, after a save and reload
too."""

from __future__ import annotations

import torch
from pydantic import TypeAdapter
from torch import nn

from cnnlab.components.activations import ActivationSpec, build_activation
from cnnlab.diagnostics import BINS, PER_LAYER, PER_WEIGHT, Diagnostics, Sample, load_records


def sampled(diagnostics: Diagnostics, model: nn.Module, step: int) -> None:
    with diagnostics.capture():
        model(torch.randn(8, 3)).square().mean().backward()
    diagnostics.before_update(model)
    model.zero_grad(set_to_none=True)
    diagnostics.after_update(step, lr=0.1, judge_updates=False)


def test_every_record_has_the_named_fields_over_their_layers(tmp_path):
    torch.manual_seed(0)
    relu = build_activation(TypeAdapter(ActivationSpec).validate_python("relu"), 4)
    model = nn.Sequential(nn.Linear(3, 4), relu, nn.Linear(4, 2))
    diagnostics = Diagnostics(model, every=1)
    sampled(diagnostics, model, 0)
    sampled(diagnostics, model, 1)
    record = diagnostics.records[-1]

    fields = Sample.__required_keys__ | Sample.__optional_keys__
    assert set(record) == fields
    assert set(PER_LAYER) | set(PER_WEIGHT) <= fields
    layers, weighted = len(diagnostics.layers), len(diagnostics.weighted)
    assert all(record[name].shape == (layers,) for name in PER_LAYER)
    assert all(record[name].shape == (weighted,) for name in PER_WEIGHT)
    assert record["hist"].shape == (layers, BINS) and record["grad_finite"].shape == (weighted,)
    assert record["step"] == 1 and isinstance(record["global_grad_norm"], float)
    # Only the activation has a dead fraction; the others are NaN, not a shifted neighbour's.
    activation = [layer.kind for layer in diagnostics.layers].index("activation")
    assert [i for i, value in enumerate(record["dead"]) if value == value] == [activation]

    diagnostics.save(tmp_path)
    reloaded = load_records(tmp_path)[-1]
    assert set(reloaded) == Sample.__required_keys__
    assert all((reloaded[name] == record[name]).all() for name in ("std", "grad_norm"))
