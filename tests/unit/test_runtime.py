"""Device, precision and memory-format decisions of a run."""

import pytest
import torch

from cnnlab import runtime
from cnnlab.errors import UserError


def test_auto_precision_is_fp32_on_a_cpu():
    assert runtime.resolve_amp("auto", torch.device("cpu")) == "off"


@pytest.mark.parametrize("fast", [True, False])
def test_bf16_on_a_cpu_only_where_it_is_fast(monkeypatch, fast):
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: fast)
    if fast:
        assert runtime.resolve_amp("bf16", torch.device("cpu")) == "bf16"
    else:
        with pytest.warns(UserWarning, match="neither AMX nor AVX-512 BF16"):
            assert runtime.resolve_amp("bf16", torch.device("cpu")) == "off"


def test_fp16_needs_a_gpu():
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        runtime.resolve_amp("fp16", torch.device("cpu"))


def test_cpu_flags_name_the_bf16_units():
    # Whatever this machine is, the decision reads the flags the kernel reports.
    flags = runtime.cpu_flags()
    assert runtime.cpu_has_fast_bf16() == bool({"amx_bf16", "avx512_bf16"} & flags)


def test_runtime_defaults_to_every_core_and_channels_last():
    import cnnlab

    decided = runtime.resolve_runtime(cnnlab.load_config({}).train)
    assert decided.threads == runtime.available_cores() and decided.channels_last
