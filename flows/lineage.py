"""What a release was made from: data hash, params hash, dvc.lock hash, git commit, library versions.

Pure look-ups with no side effects; a missing git or dvc.lock yields ``None``/"unknown" rather than an
error, because lineage must never stop a run on a machine without them. Does not decide versions.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

LIBRARIES = (
    "edgeloop", "scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "pandas", "pyarrow",
    "great-expectations", "evidently", "prefect", "dvc", "tuf",
)


def frame_hash(frame: pd.DataFrame) -> str:
    """sha256 over column names and row values (order-sensitive); independent of file encoding.

    List cells (an edge row's ``probabilities``) are hashed as their JSON text: pandas cannot hash arrays."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(_hashable(frame), index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _hashable(frame: pd.DataFrame) -> pd.DataFrame:
    listy = [name for name in frame.columns if frame[name].dtype == object
             and frame[name].map(lambda v: isinstance(v, list | tuple | np.ndarray)).any()]
    if not listy:
        return frame
    out = frame.copy()
    for name in listy:
        out[name] = out[name].map(lambda v: json.dumps(np.asarray(v).tolist())
                                  if isinstance(v, list | tuple | np.ndarray) else v)
    return out


def git_commit(root: Path) -> str:
    """HEAD of the repository at ``root`` (``-dirty`` if tracked files other than dvc.lock differ).

    "unknown" outside a git repository."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            # dvc.lock is rewritten by the run itself; it is hashed separately.
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", ".", ":!dvc.lock"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}-dirty" if dirty else head


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions
