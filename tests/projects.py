"""Throw-away copies of this project as git + DVC repositories, for tests that run real dvc.

``make_git_project`` copies the pipeline's code and DVC files, writes a small params.yaml and commits
it all; ``run`` runs a command with this venv first on PATH (dvc.yaml's ``python -m flows`` must be this
venv's python) and fails the test with the command's output when it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from edgeloop.testkit.project import REPO, override, repo_params_raw

PROJECT_FILES = ["dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config", ".dvc/.gitignore", "data/uploads/README.md"]
PROJECT_DIRS = ["flows", "edge", "simulator", "edgeloop"]
GIT_USER = ["-c", "user.name=t", "-c", "user.email=t@example.org"]


def env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}


def run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done


def make_git_project(root: Path, changes: dict[str, Any]) -> Path:
    """A committed git repository holding the project with ``changes`` applied to params.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    for name in PROJECT_DIRS:
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "params.yaml").write_text(yaml.safe_dump(override(repo_params_raw(), changes), sort_keys=False))
    run(["git", "init", "-q"], root)
    run(["git", *GIT_USER, "add", "-A"], root)
    run(["git", *GIT_USER, "commit", "-qm", "project"], root)
    return root
