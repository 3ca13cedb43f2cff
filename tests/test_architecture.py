"""The one-way stack (docs/architecture.md) is checked by import-linter (``.importlinter``, run by ``make lint``):
the real tree keeps both contracts, and an import that points up fails them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("core", "tenants", "chat", "streaming", "config")
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own tool on our own tree
        [LINT_IMPORTS, "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of Brook's packages and its import-linter configuration, to break on purpose."""
    copy = tmp_path_factory.mktemp("brook")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", copy / ".importlinter")
    return copy


def test_the_tree_keeps_the_one_way_stack(tree: Path) -> None:
    result = lint_imports(tree)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "back_import", "broken"),
    [
        ("chat/services.py", "from streaming.run import runner", "chat.services -> streaming.run.runner"),
        ("core/errors.py", "import tenants.models", "core.errors -> tenants.models"),
        ("streaming/agents/demo.py", "from streaming.live import fanout", "streaming.agents.demo -> streaming.live"),
        ("streaming/agents/llm.py", "from chat import selectors", "streaming.agents.llm -> chat.selectors"),
    ],
)
def test_an_import_that_points_up_breaks_the_build(tree: Path, module: str, back_import: str, broken: str) -> None:
    path = tree / module
    original = path.read_text()
    path.write_text(original + f"\n{back_import}  # a deliberate back import\n")
    try:
        result = lint_imports(tree)
    finally:
        path.write_text(original)

    assert result.returncode != 0
    assert "1 broken" in result.stdout
    assert broken in result.stdout
