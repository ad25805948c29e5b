"""The README's first commands are a contract with newcomers: keep them true."""

import re

from tests.conftest import ROOT


def commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", text, flags=re.S)[:2]


def test_ci_runs_the_readme_test_command_verbatim():
    install_and_run, install_and_test = commands()
    assert "cnnlab train examples/quickstart.yaml" in install_and_run
    assert "pytest" in install_and_test
    ci = (ROOT / ".ci" / "run").read_text()
    assert install_and_test in ci.splitlines()


def test_the_quickstart_config_exists():
    assert (ROOT / "examples" / "quickstart.yaml").is_file()


def test_the_readme_lists_exactly_the_inits_cnnlab_list_inits_prints():
    from cnnlab.components.init import INITS

    text = " ".join((ROOT / "README.md").read_text().split())
    listing = text.split("The catalogue (`cnnlab list inits`):")[1].split("Weights are drawn")[0]
    listing = listing.split("is a key of")[0]
    names = set()
    for token in re.findall(r"`([a-z_/]+)`", listing):
        names.update(token.split("/"))
    assert names == set(INITS.names())


def test_the_readme_says_how_to_reach_the_bare_cnnlab_command_after_its_install():
    text = (ROOT / "README.md").read_text()
    before_first_bare_command = text.split("| `cnnlab train CONFIG")[0]
    assert ". .venv/bin/activate" in before_first_bare_command
