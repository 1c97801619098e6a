"""The code as the project formats and lints it: ruff (format and check, with
pyproject.toml's settings) on the Python, snakefmt on the Snakemake files. The
tools come with the test extra; where they are missing the checks skip, but
not in CI (CI set)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from repo import REPO

BIN = Path(sys.executable).parent


def _tool(name):
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed (the test extra installs it)")
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return found


@pytest.mark.parametrize(
    "command",
    [
        ("ruff", "format", "--check", "."),
        ("ruff", "check", "."),
        ("snakefmt", "--check", "Snakefile", "workflow"),
    ],
)
def test_the_code_is_formatted_and_linted(command):
    result = subprocess.run(
        [_tool(command[0]), *command[1:]], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
