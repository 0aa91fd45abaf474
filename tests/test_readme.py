"""The README's set-up lines and CI must agree (CI runs exactly the README's commands), and every
```python block of the README runs.

Conventions for README code blocks (CONTRIBUTING.md, "README code blocks"):

- every ```python block is executed by this test, in README order, each in a fresh interpreter
  (a block carries its own imports) in an empty temporary directory;
- a block whose first line is ``# needs: <what>`` (real data, a GPU, the network) is not
  executed; the test reports it as skipped with that reason;
- a block whose first line is ``# slow: <why>`` runs only under ``pytest -m slow``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _setup_block() -> list[str]:
    text = README.read_text()
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
    assert "pytest -m slow" in ci
    assert ci.index(tests) < ci.index("pytest -m slow")


def test_ci_runs_lint_format_and_type_checks_after_install():
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    install = _setup_block()[0]
    checks = [
        "ruff check relpos tests benchmarks examples",
        "ruff format --check relpos tests benchmarks examples",
        "mypy relpos",
    ]
    for check in checks:
        assert check in ci, check
        assert ci.index(install) < ci.index(check), f"{check!r} must run after the install"
    hooks = (ROOT / ".pre-commit-config.yaml").read_text()
    for entry in ("entry: ruff check", "entry: ruff format --check", "entry: mypy relpos"):
        assert entry in hooks, f".pre-commit-config.yaml lacks {entry!r}"


# ---------------------------------------------------------------------- README code blocks
def python_blocks(text: str) -> list[tuple[str, int, str]]:
    """``(section heading, line number, code)`` of every ```python block, in README order."""
    blocks = []
    for m in re.finditer(r"^```python\n(.*?)^```", text, re.S | re.M):
        line = text.count("\n", 0, m.start()) + 1
        headings = re.findall(r"^#+ (.+)$", text[: m.start()], re.M)
        blocks.append((headings[-1] if headings else "top", line, m.group(1)))
    return blocks


def _params() -> list:
    params = []
    for heading, line, code in python_blocks(README.read_text()):
        first = code.splitlines()[0].strip() if code.strip() else ""
        marks = []
        if first.startswith("# needs:"):
            reason = first.removeprefix("# needs:").strip()
            marks.append(pytest.mark.skip(reason=f"README.md:{line} needs {reason}"))
        elif first.startswith("# slow:"):
            marks.append(pytest.mark.slow)
        slug = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")
        params.append(pytest.param(line, code, id=f"{slug}-line{line}", marks=marks))
    return params


def test_readme_has_python_blocks():
    assert len(python_blocks(README.read_text())) >= 2


def test_block_conventions_are_parsed():
    text = "# A\n```python\n# needs: data\nx = 1\n```\n## B\n```python\ny = 2\n```\n"
    assert python_blocks(text) == [("A", 2, "# needs: data\nx = 1\n"), ("B", 7, "y = 2\n")]


@pytest.mark.parametrize(("line", "code"), _params())
def test_readme_python_block_runs(line: int, code: str, tmp_path: Path):
    """Runs one block as a user would: a fresh interpreter, in an empty directory (so what it
    registers or writes leaves no trace); tracebacks give the README's own line numbers."""
    script = tmp_path / f"README.md-line{line}.py"
    script.write_text("\n" * line + code)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"README.md:{line} failed:\n{done.stderr[-3000:]}"
