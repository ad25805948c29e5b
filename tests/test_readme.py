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
