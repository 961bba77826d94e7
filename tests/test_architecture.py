"""The import layers hold: ``lint-imports`` keeps every contract in pyproject.toml, and each contract bites.

The contracts (pyproject ``[tool.importlinter]``): edgeloop on top; flows and hub side by side, never
importing each other; simulator below them; edge at the bottom with no cloud library; Prefect only in
flows.orchestration; bench never imports tests; no import cycle between siblings anywhere. To prove they
are not decoration, a scratch copy of the tree gets one wrong import per contract and ``lint-imports``
must then fail naming that import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeloop.testkit.project import REPO

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
PACKAGES = ("edge", "flows", "hub", "simulator", "edgeloop", "bench", "tests")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}  # the scratch copy's packages, not the installed ones
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)


def test_lint_imports_keeps_every_contract() -> None:
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout and " 0 broken" in done.stdout, done.stdout


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("layers")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "data", "results")
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        ("hub/settings.py", "import flows.params", "Layers"),
        ("flows/loop/log.py", "import hub.registry", "Layers"),
        ("edge/inference.py", "import pandas", "import no cloud library"),
        ("flows/stages/train.py", "import prefect", "Prefect is imported only by flows.orchestration"),
        ("bench/releases.py", "import tests.test_contracts", "Benchmarks do not import the tests"),
        ("edge/contracts/names.py", "import edge.contracts.manifest", "No import cycle"),
    ],
)
def test_a_wrong_import_in_a_scratch_copy_breaks_its_contract(scratch: Path, module: str, wrong_import: str,
                                                              contract: str) -> None:
    path = scratch / module
    original = path.read_text()
    path.write_text(original + f"\n{wrong_import}  # deliberately wrong\n")
    try:
        done = lint_imports(scratch)
    finally:
        path.write_text(original)
    assert done.returncode != 0, done.stdout
    broken = done.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, done.stdout
    importer = module.removesuffix(".py").replace("/", ".")
    assert importer.rsplit(".", 1)[-1] in broken, done.stdout  # the report names the offending module
