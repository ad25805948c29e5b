"""Issue 17, `cnnlab export`: a tiny trained run exported as ONNX and TorchScript, each checked
against PyTorch with the stated tolerance and recorded; a mismatch keeps the file as
`.unverified` and ends in one sentence; a missing onnxruntime skips the check and says how to
install it."""

from __future__ import annotations

import json
import sys

import pytest
import torch

import cnnlab
from cnnlab import exporting
from cnnlab.rundir import RunDir, export_record_path, unverified_path
from tests.conftest import TINY
from tests.reliability.runs import run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """simple_cnn on synthetic 16 px images, one epoch, one thread."""
    config = json.loads(json.dumps(TINY))
    config["data"]["synthetic"]["image_size"] = 16
    config["train"]["epochs"] = 1
    out = tmp_path_factory.mktemp("export") / "run"
    cnnlab.train(cnnlab.Config.model_validate(config), out=out, progress=False)
    return out


def _pixels(count: int, seed: int) -> torch.Tensor:
    return torch.rand(count, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _pytorch_logits(run, pixels: torch.Tensor) -> torch.Tensor:
    """The oracle: the run's own model on pixels normalized by hand with its config's stats."""
    cfg = cnnlab.load_config(RunDir.open(run).config)
    mean = torch.tensor(cfg.data.normalize.mean)[None, :, None, None]
    std = torch.tensor(cfg.data.normalize.std)[None, :, None, None]
    with torch.no_grad():
        return cnnlab.load_model(run)((pixels - mean) / std)


def test_onnx_export_matches_pytorch_on_pixels_with_any_batch_size(trained):
    ort = pytest.importorskip("onnxruntime")
    record = cnnlab.export(trained, format="onnx", batch=8)

    path = RunDir.open(trained).exported_model("onnx")
    assert path.is_file() and not unverified_path(path).exists()
    saved = json.loads(export_record_path(path).read_text())
    check = saved["check"]
    assert check["status"] == "passed" and check["images"] == 8
    assert "validation images of the run" in check["source"]
    assert check["tolerance"] == exporting.TOLERANCE
    assert check["max_abs_difference"] <= exporting.TOLERANCE * check["scale"]
    assert saved["versions"]["onnxruntime"] == ort.__version__
    assert saved["input"]["shape"] == ["batch", 3, 16, 16]
    assert record["output"]["classes"] == ["class0", "class1", "class2", "class3"]

    # Independently of the command's own check: another batch size, raw [0, 1] pixels in.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pixels = _pixels(5, seed=3)
    logits = session.run(None, {session.get_inputs()[0].name: pixels.numpy()})[0]
    assert logits.shape == (5, 4)
    assert torch.allclose(torch.from_numpy(logits), _pytorch_logits(trained, pixels), atol=1e-4)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_through_the_cli_states_the_check_and_tolerance(trained, tmp_path,
                                                                           capsys):
    out = tmp_path / "net.pt"
    code, stdout, stderr = run_cli(capsys, "export", trained, "--format", "torchscript",
                                   "--out", out, "--batch", "4")
    assert code == 0, stderr
    assert "in [0, 1]" in stdout and "normalization is inside" in stdout
    assert "tolerance 0.0001" in stdout and "passed" in stdout
    loaded = torch.jit.load(str(out))
    pixels = _pixels(3, seed=4)
    with torch.no_grad():
        assert torch.allclose(loaded(pixels), _pytorch_logits(trained, pixels), atol=1e-5)
    assert json.loads(export_record_path(out).read_text())["check"]["status"] == "passed"


def test_a_mismatch_keeps_the_file_as_unverified_and_ends_in_one_sentence(trained, tmp_path,
                                                                          capsys, monkeypatch):
    write, run_file = exporting.EXPORTERS["torchscript"]

    def off_by_a_little(path, images):
        logits, runtime = run_file(path, images)
        return logits + 0.01, runtime

    monkeypatch.setitem(exporting.EXPORTERS, "torchscript", (write, off_by_a_little))
    out = tmp_path / "net.pt"
    code, _, stderr = run_cli(capsys, "export", trained, "--format", "torchscript", "--out", out)
    assert code == exporting.ExportMismatch.exit_code == 1
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "0.01" in lines[0]
    assert unverified_path(out).is_file() and not out.exists()
    assert json.loads(export_record_path(out).read_text())["check"]["passed"] is False


def test_without_onnxruntime_the_check_is_skipped_and_the_extra_named(trained, tmp_path, capsys,
                                                                      monkeypatch):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    out = tmp_path / "net.onnx"
    code, stdout, stderr = run_cli(capsys, "export", trained, "--out", out)
    assert code == 0, stderr
    assert "check: skipped" in stdout and "pip install 'cnnlab[onnx]'" in stdout
    assert json.loads(export_record_path(out).read_text())["check"]["status"] == "skipped"
    assert out.is_file()


def test_when_the_dynamo_exporter_fails_the_torchscript_based_one_is_used_with_a_note(
        trained, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    original = torch.onnx.export

    def dynamo_fails(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("unsupported operator aten::something")
        return original(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", dynamo_fails)
    record = cnnlab.export(trained, format="onnx", out=tmp_path / "net.onnx", batch=5)
    assert record["exporter"] == "torchscript-based"
    assert any("aten::something" in note for note in record["notes"])
    assert record["check"]["status"] == "passed" and record["check"]["images"] == 5


@pytest.mark.parametrize("reference, exported, passed", [
    (torch.tensor([[10.0, -20.0]]), torch.tensor([[10.0, -20.0019]]), True),  # 1e-4 of 20
    (torch.tensor([[10.0, -20.0]]), torch.tensor([[10.0, -20.003]]), False),
    (torch.tensor([[0.1, 0.2]]), torch.tensor([[0.1, 0.2002]]), False),  # scale is at least 1
    (torch.tensor([[0.1, 0.2]]), torch.tensor([[0.1, 0.2]]).repeat(2, 1), False),  # shape
])
def test_the_tolerance_is_relative_to_the_logit_scale(reference, exported, passed):
    assert exporting.compare(reference, exported)["passed"] is passed


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_a_run_evaluated_with_flip_translate_exports_its_six_views(tmp_path, format):
    from cnnlab.predict import _probabilities, open_run

    if format == "onnx":
        ort = pytest.importorskip("onnxruntime")
    config = json.loads(json.dumps(TINY))
    config["data"]["synthetic"]["image_size"] = 16
    config["train"].update(epochs=1, tta="flip_translate")
    run = tmp_path / "run"
    cnnlab.train(cnnlab.Config.model_validate(config), out=run, progress=False)
    record = cnnlab.export(run, format=format, batch=8)
    assert record["check"]["status"] == "passed"
    assert record["input"]["tta_inside"] == "flip_translate"

    path = RunDir.open(run).exported_model(format)
    # Pixels as image files give them (k / 255), so predict reads exactly these images.
    quantized = (_pixels(5, seed=3) * 255).round().to(torch.uint8)
    pixels = quantized.float() / 255
    if format == "onnx":
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        exported = torch.from_numpy(
            session.run(None, {session.get_inputs()[0].name: pixels.numpy()})[0])
    else:
        with torch.no_grad():
            exported = torch.jit.load(str(path))(pixels)
    by_predict = _probabilities(open_run(run), quantized)
    assert torch.allclose(exported.softmax(1), by_predict, atol=exporting.TOLERANCE)
    # The views are inside the file: its logits are not the plain network's.
    assert not torch.allclose(exported, _pytorch_logits(run, pixels), atol=exporting.TOLERANCE)
