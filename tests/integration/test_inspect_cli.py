import json

import pytest

from tests.conftest import ROOT, cli, write_config

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


PLAIN10 = {"name": "plain10", "data": {"dataset": "synthetic", "batch_size": 32,
                                       "synthetic": {"num_classes": 4, "image_size": 16,
                                                     "train_size": 128, "test_size": 32}},
           "model": {"arch": "plain", "depth": 10, "width": 16, "norm": "none"}}


@pytest.mark.parametrize("overrides, verdict, layer, advice", [
    (["model.init={name: normal, std: 1.0}"], "exploding", "body.", "kaiming_normal"),
    (["model.init={default: kaiming_normal, bias: {name: constant, value: -5}}"], "dead",
     "body.", "leaky_relu"),
    (["model.activation=tanh", "model.init={name: normal, std: 1.0}"], "saturated", "body.0.act",
     "smaller init"),
    ([], "healthy", None, "within a factor of"),
])
def test_each_verdict_names_where_the_trouble_starts_and_what_to_change(tmp_path, overrides,
                                                                        verdict, layer, advice):
    config = write_config(tmp_path / "plain.yaml", PLAIN10)
    args = [item for override in overrides for item in ("-o", override)]
    report = json.loads(cli("inspect", str(config), *args, "--json", check=True).stdout)
    assert report["verdict"] == verdict
    if layer is None:
        assert report["layer"] is None
    else:
        assert report["layer"].startswith(layer)
    assert advice in report["advice"]
