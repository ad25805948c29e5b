"""`--help` documents every option with its default, and answers fast (issue 15, item 13)."""

import argparse
import json
import subprocess
import sys

from cnnlab.catalogue import TABLE_FILE, table_from_registries
from cnnlab.catalogue_table import TABLE
from cnnlab.cli import build_parser
from tests.conftest import ROOT


def options(parser: argparse.ArgumentParser, prefix: str = ""):
    """(parser, action, where) for every documented argument of every subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from options(sub, f"{name} ")
        elif action.help != argparse.SUPPRESS and not isinstance(action, argparse._HelpAction):
            yield parser, action, prefix + ("/".join(action.option_strings) or action.dest)


def test_every_option_has_help_that_shows_its_default():
    missing, no_default = [], []
    for parser, action, where in options(build_parser()):
        # What --help prints for this option, its %(default)s filled in.
        text = parser._get_formatter()._get_help_string(action) % {"default": action.default}
        if not (action.help or "").strip():
            missing.append(where)
        elif action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS) \
                and f"default: {action.default}" not in text:
            no_default.append(where)
    assert not missing, f"options without help: {missing}"
    assert not no_default, f"help that does not say the default: {no_default}"


def test_help_shows_the_defaults_filled_in():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = sub.choices["lr-find"].format_help()
    assert "default: 1e-07" in text and "default: 10.0" in text and "default: 100" in text
    assert "default: 3" in sub.choices["ablate"].format_help()


def test_help_and_list_answer_without_importing_torch():
    script = """
import sys
from cnnlab.cli import main
for argv in (["--help"], ["train", "--help"], ["report", "--help"]):
    try:
        main(argv)
    except SystemExit:
        pass
main(["list"])
for kind in ("models", "datasets", "activations", "norms", "inits", "optimizers", "schedules"):
    main(["list", kind, "--json"])
print("torch imported" if "torch" in sys.modules else "no torch")
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("no torch")


def test_the_list_table_equals_the_registries():
    assert TABLE == table_from_registries(), (
        f"{TABLE_FILE.name} is out of date: run `python -m cnnlab.catalogue` to rewrite it")


def test_list_json_gives_each_entry_its_keys(capsys):
    from cnnlab.cli import main

    assert main(["list", "activations", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)["activations"]
    leaky = next(e for e in listing if e["name"] == "leaky_relu")
    assert "negative_slope" in leaky["keys"]
