"""The README's set-up lines and CI must agree: CI runs exactly the README's commands."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_block() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```(?:bash|sh)\n(.*?)```", text, re.S)
    assert block, "README.md must start with a bash block of set-up commands"
    head = text[: block.start()]
    assert head.count("\n") <= 4, "the set-up block must be among the README's first lines"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_starts_with_install_main_job_and_tests():
    install, main_job, tests = _setup_block()
    assert "pip install" in install and "torch==" in install
    assert main_job == "relpos demo sleep"
    assert tests.startswith("pytest")


def test_ci_runs_exactly_the_readme_install_and_test_commands():
    install, _, tests = _setup_block()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert install in ci
    assert tests in ci
    assert "set -euo pipefail" in ci
