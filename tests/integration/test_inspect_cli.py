import json

from tests.conftest import ROOT, cli

QUICKSTART = str(ROOT / "examples" / "quickstart.yaml")


def test_inspect_json_reports_every_layer_with_its_init_rule_and_a_verdict(tmp_path):
    rules = "model.init={default: kaiming_normal, rules: [{match: classifier, init: zeros}]}"
    result = cli("inspect", QUICKSTART, "-o", rules, "--json", check=True)
    report = json.loads(result.stdout)
    assert report["verdict"] in {"healthy", "vanishing", "exploding", "dead", "saturated",
                                 "symmetric"}
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert layers["classifier"]["init"] == "zeros"
    assert layers["classifier"]["rule"] == "rule 1: classifier"
    assert layers["body.0.0.conv"]["rule"] == "default"
    kinds = {layer["kind"] for layer in report["layers"]}
    assert kinds == {"conv", "norm", "activation", "linear"}
    for layer in report["layers"]:
        assert {"mean", "std", "grad_std", "weight_grad_norm", "dead", "saturated"} <= set(layer)


def test_inspect_compares_configs_in_one_plot(tmp_path):
    plot = tmp_path / "std.png"
    result = cli("inspect", QUICKSTART, QUICKSTART, "-o", "model.init=zeros", "--plot",
                 str(plot), "--json", check=True)
    reports = json.loads(result.stdout)["configs"]
    assert [r["verdict"] for r in reports] == ["symmetric", "symmetric"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = cli("inspect", QUICKSTART, check=True).stdout
    assert text.startswith(f"{QUICKSTART}: healthy")
    assert "init (rule)" in text
