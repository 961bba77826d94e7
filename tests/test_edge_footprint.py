"""The edge stays small: importing it, and ``edge-runner --help``, load no cloud library.

Each check runs in a fresh interpreter and lists the modules it ended up with; pandas, sklearn,
prefect, pyarrow, pydantic, fastapi, flows and hub must not be among them. A static check also reads
every edge/ module's imports.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = ("pandas", "sklearn", "prefect", "pyarrow", "pydantic", "fastapi", "flows", "hub", "evidently",
             "great_expectations", "dvc", "skl2onnx", "onnx", "typer", "sqlalchemy",
             "paho", "asyncua")  # plant-protocol clients load only when runner.toml's [inputs] asks for one
ALLOWED_THIRD_PARTY = {"numpy", "onnxruntime", "tuf", "urllib3", "securesystemslib", "cryptography"}
# the plant-protocol clients: optional extras, each imported by its one adapter module only
PROTOCOL_CLIENTS = {"mqtt.py": "paho", "opcua.py": "asyncua"}

LIST_MODULES = "import sys, json; print(json.dumps(sorted(sys.modules)))"


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\n{LIST_MODULES}"], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True)
    return {name.split(".")[0] for name in json.loads(out.stdout.strip().splitlines()[-1])}


@pytest.mark.parametrize("code", [
    "import edge",
    "import edge.runner, edge.cli, edge.http_api, edge.updates, edge.uploader, edge.spool",
    "import sys\nfrom edge.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    "import sys\nfrom edge.cli import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass",
])
def test_no_cloud_library_is_loaded(code: str) -> None:
    loaded = _modules_after(code)
    assert not loaded & set(FORBIDDEN), sorted(loaded & set(FORBIDDEN))


def test_edge_runner_help_runs_as_a_command() -> None:
    script = Path(sys.executable).parent / "edge-runner"
    for args in (["--help"], ["enroll", "--help"], ["run", "--help"], ["status", "--help"], ["predict", "--help"],
                 ["rollback", "--help"]):
        out = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "usage: edge-runner" in out.stdout


def test_edge_modules_import_only_the_allowed_libraries() -> None:
    stdlib = set(sys.stdlib_module_names)
    for path in sorted((REPO / "edge").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if path.parent.name == "inputs" and PROTOCOL_CLIENTS.get(path.name) == top:
                    continue  # edge/inputs/mqtt.py -> paho, edge/inputs/opcua.py -> asyncua (optional extras)
                assert top in stdlib or top == "edge" or top in ALLOWED_THIRD_PARTY, f"{path.name} imports {name}"
