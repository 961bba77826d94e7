"""Reproduce a published release from its recorded lineage and report whether it came out the same.

A release bundle holds ``model.onnx``, ``manifest.json`` and the lineage files ``dvc.lock`` and
``params.yaml``. ``reproduce_bundle`` checks that the bundle's dvc.lock is the one the manifest
hashed, restores the curated data snapshot that dvc.lock records (by its hash, from the project's DVC
cache, fetching from the project's DVC remote on a miss) into a fresh work folder, runs the split,
train and export stages there with the bundle's params, and compares: training-data hash, ONNX
predictions on the reproduced holdout (exact equality), ONNX bytes. ``reproduce_release`` finds the
bundle of release ``N`` in a TUF repository folder (consistent snapshots: ``<sha256>.<name>``).

The work folder is a git checkout of the project's current commit (a plain folder when the project
is not a git repository), because export embeds ``git_commit`` in the ONNX metadata: bytes can only be
identical when the project is at the release's commit, and the report says so when they are not. The
project's own ``data/``, ``params.yaml`` and ``dvc.lock`` are never touched; its DVC cache is shared
(read, and filled by a fetch on a miss).

Leaves out: TUF signature checks (``edgeloop release verify`` does them; here files are matched to
their sha256 only), the ingest/evaluate/gate stages (the snapshot already is ingest's output; evaluate
and gate do not change the model), and running old code: the stages are this installation's code.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from edge.contracts.errors import UserError
from edge.contracts.manifest import Manifest, ManifestError, verify_model
from edge.contracts.release_layout import BUNDLE_FILES as RELEASE_FILES
from edge.contracts.release_layout import HASHED_TARGET_PATTERN, LINEAGE_FILES, MANIFEST_FILE, MODEL_FILE, bundle_target

__all__ = ["REPRODUCE_FILES", "locate_release_files", "reproduce_bundle", "reproduce_release"]

DVC_LOCK, PARAMS = LINEAGE_FILES
REPRODUCE_FILES = (*RELEASE_FILES, *LINEAGE_FILES)
STAGES = ("split", "train", "export")  # what turns the curated snapshot into model.onnx
CURATED = "data/curated"  # edge.contracts.layout.Paths.curated, relative to the project root
SUBPROCESS_TIMEOUT_S = 900
_TARGETS_METADATA = re.compile(r"^([0-9]+)\.targets\.json$")


class HasRepository(Protocol):
    @property
    def repository(self) -> Path: ...


@dataclass(frozen=True)
class Bundle:
    """The four files of a release bundle, checked against each other."""

    manifest: Manifest
    model: bytes
    dvc_lock: bytes
    params_yaml: bytes
    source: str  # where the files came from, for messages


# --- reading and checking the bundle ------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: not found (a release bundle holds {', '.join(REPRODUCE_FILES)})") from None


def check_lock(manifest: Manifest, dvc_lock: bytes, source: str) -> None:
    """UserError unless ``dvc_lock`` is the dvc.lock whose sha256 the manifest records."""
    recorded = manifest.lineage.dvc_lock_hash
    if recorded is None:
        raise UserError(f"{source}: the manifest records no dvc.lock (lineage.dvc_lock_hash is null): not reproducible")
    actual = _sha256(dvc_lock)
    if actual != recorded:
        raise UserError(
            f"{source}/{DVC_LOCK} has sha256 {actual} but the manifest's lineage.dvc_lock_hash is {recorded}: "
            "this is not the dvc.lock the release was built from (the gate hashes dvc.lock as it stands "
            "when the gate stage runs); refusing to reproduce from it"
        )


def load_bundle(files: Mapping[str, Path], source: str) -> Bundle:
    """Read and cross-check a bundle: model digest vs manifest, dvc.lock hash vs manifest."""
    raw = {name: _read(files[name]) for name in REPRODUCE_FILES}
    try:
        manifest = Manifest.from_json(raw[MANIFEST_FILE])
        verify_model(manifest, raw[MODEL_FILE])
    except ManifestError as exc:
        raise UserError(f"{source}: {exc}") from None
    check_lock(manifest, raw[DVC_LOCK], source)
    return Bundle(manifest, raw[MODEL_FILE], raw[DVC_LOCK], raw[PARAMS], source)


def curated_entry(dvc_lock: bytes) -> dict[str, Any]:
    """The lock entry of the curated data the split stage consumed (else ingest's output)."""
    try:
        stages = yaml.safe_load(dvc_lock)["stages"]
    except (yaml.YAMLError, KeyError, TypeError):
        raise UserError(f"{DVC_LOCK}: not a DVC lock file (no stages)") from None
    candidates = [*stages.get("split", {}).get("deps", []), *stages.get("ingest", {}).get("outs", [])]
    for entry in candidates:
        if isinstance(entry, dict) and entry.get("path") == CURATED and entry.get("md5"):
            return {k: entry[k] for k in ("md5", "hash", "size", "nfiles") if k in entry}
    raise UserError(f"{DVC_LOCK}: records no hash for {CURATED} (neither split deps nor ingest outs)")


# --- subprocesses ----------------------------------------------------------------------------------


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)


def _dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "dvc", *args], cwd)


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    """DVC's first ERROR or WARNING line, else the last line of output."""
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    flagged = [line for line in lines if line.startswith(("ERROR", "WARNING"))]
    return (flagged or lines or [f"exit code {done.returncode}"])[0 if flagged else -1]


def _git_head(root: Path) -> str | None:
    done = _run(["git", "-C", str(root), "rev-parse", "--verify", "--quiet", "HEAD^{commit}"], root)
    return done.stdout.strip() if done.returncode == 0 else None


# --- the work folder -------------------------------------------------------------------------------


def prepare_workdir(workdir: Path | None) -> tuple[Path, bool]:
    """The folder to work in and whether we created it (and so remove it afterwards)."""
    if workdir is None:
        return Path(tempfile.mkdtemp(prefix="edgeloop-reproduce-")), True
    workdir = Path(workdir).resolve()
    if workdir.exists() and any(workdir.iterdir()):
        raise UserError(f"{workdir}: the work folder must be empty or absent")
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir, False


def checkout_project(project_root: Path, dest: Path) -> None:
    """A clean git checkout of the project's HEAD at ``dest`` (a plain folder outside git)."""
    head = _git_head(project_root)
    if head is None:
        dest.mkdir(parents=True)
        return
    for cmd in (
        ["git", "clone", "--quiet", "--no-checkout", str(project_root), str(dest)],
        ["git", "-C", str(dest), "checkout", "--quiet", "--detach", head],
    ):
        done = _run(cmd, project_root)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {_last_line(done)}")


# --- restoring the data snapshot -------------------------------------------------------------------


def _config_value(value: str) -> str:
    """A value for DVC's INI config, quoted when it holds characters the parser would split on."""
    if not any(c in value for c in ",#\"'") and value == value.strip():
        return value
    return f"'{value}'" if '"' in value else f'"{value}"'


def project_cache_dir(project_root: Path) -> Path:
    done = _dvc(["cache", "dir"], project_root)
    if done.returncode != 0:
        raise UserError(f"{project_root}: not a DVC project ({_last_line(done)})")
    return Path(done.stdout.strip())


def init_scratch_repo(scratch: Path, cache_dir: Path) -> None:
    """A DVC repository without git whose cache is the project's (and whose site cache stays inside)."""
    scratch.mkdir(parents=True)
    done = _dvc(["init", "--no-scm", "--quiet"], scratch)
    if done.returncode != 0:
        raise RuntimeError(f"dvc init failed in {scratch}: {_last_line(done)}")
    local = (
        f"[core]\n    site_cache_dir = {_config_value(str(scratch / '.dvc' / 'site'))}\n"
        f"[cache]\n    dir = {_config_value(str(cache_dir))}\n"
    )
    (scratch / ".dvc" / "config.local").write_text(local, encoding="utf-8")


def project_remote_settings(project_root: Path) -> list[tuple[str, str]]:
    """The project's own (repo and local level) remote settings, paths resolved by DVC."""
    done = _dvc(["config", "--list", "--show-origin"], project_root)
    if done.returncode != 0:
        return []
    dvc_dir = (project_root / ".dvc").resolve()
    settings = []
    for line in done.stdout.splitlines():
        origin, _, setting = line.partition("\t")
        key, _, value = setting.partition("=")
        if (project_root / origin).resolve().parent != dvc_dir:
            continue  # global and system levels apply to the scratch repository anyway
        if key.startswith("remote.") or key == "core.remote":
            settings.append((key, value))
    return sorted(settings, key=lambda kv: kv[0] == "core.remote")  # remotes before the default that names one


def copy_remote_settings(project_root: Path, scratch: Path) -> bool:
    """Give the scratch repository the project's remotes; False when the project has none."""
    settings = project_remote_settings(project_root)
    for key, value in settings:
        done = _dvc(["config", "--local", key, value], scratch)
        if done.returncode != 0:
            raise RuntimeError(f"dvc config {key} failed in {scratch}: {_last_line(done)}")
    return any(key.startswith("remote.") for key, _ in settings)


def _missing_snapshot(entry: Mapping[str, Any], cache_dir: Path, why: str) -> UserError:
    return UserError(
        f"the release's data snapshot ({CURATED} {entry['md5']}) is not in the DVC cache {cache_dir} {why}: "
        "run `dvc pull` in the project on a machine that has it, or configure the DVC remote that holds it "
        "(`dvc remote add -d NAME URL`), then try again"
    )


def restore_snapshot(entry: Mapping[str, Any], project_root: Path, scratch: Path, dest: Path) -> str:
    """Check out the snapshot ``entry`` names into ``dest``; returns "cache" or "remote" (its source)."""
    cache_dir = project_cache_dir(project_root)
    init_scratch_repo(scratch, cache_dir)
    dvc_file = scratch / "curated.dvc"
    dvc_file.write_text(yaml.safe_dump({"outs": [{**entry, "path": "curated"}]}, sort_keys=False), encoding="utf-8")
    source = "cache"
    if _dvc(["checkout", "--quiet", dvc_file.name], scratch).returncode != 0:
        if not copy_remote_settings(project_root, scratch):
            raise _missing_snapshot(entry, cache_dir, "and the project has no DVC remote")
        fetched = _dvc(["fetch", dvc_file.name], scratch)
        if fetched.returncode != 0:
            raise _missing_snapshot(entry, cache_dir, f"nor in the DVC remote (dvc fetch: {_last_line(fetched)})")
        if _dvc(["checkout", "--quiet", dvc_file.name], scratch).returncode != 0:
            raise _missing_snapshot(entry, cache_dir, f"nor in the project's DVC remote ({_last_line(fetched)})")
        source = "remote"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(scratch / "curated"), str(dest))
    return source


# --- running the stages and comparing -------------------------------------------------------------


def run_stages(root: Path) -> dict[str, float]:
    """split, train and export in ``root`` with the params.yaml there; seconds per stage."""
    from edge.contracts.layout import Paths
    from flows.params import load_params
    from flows.stages import run_stage

    paths = Paths.at(root)
    params = load_params(paths.params)
    seconds = {}
    for name in STAGES:
        started = time.perf_counter()
        run_stage(name, params, paths)
        seconds[name] = round(time.perf_counter() - started, 3)
    return seconds


def _onnx_commit(model: bytes) -> str | None:
    from flows.inference import load_session

    commit: str | None = load_session(model).get_modelmeta().custom_metadata_map.get("git_commit")
    return commit


def compare_predictions(release: bytes, reproduced: bytes, root: Path) -> dict[str, Any]:
    """Both models on the reproduced holdout: exact equality of labels and probabilities."""
    import numpy as np
    import pandas as pd

    from flows.inference import score
    from flows.params import load_params
    from flows.stages.train import features_matrix

    schema = load_params(root / PARAMS).schema
    x = features_matrix(pd.read_parquet(root / "data" / "split" / "holdout.parquet"), schema)
    old, new = score(release, x), score(reproduced, x)
    diff = np.abs(old.probabilities.astype(np.float64) - new.probabilities.astype(np.float64))
    return {
        "predictions_identical": bool(
            np.array_equal(old.labels, new.labels) and np.array_equal(old.probabilities, new.probabilities)
        ),
        "label_flips": int((old.labels != new.labels).sum()),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
    }


def bytes_note(identical: bool, recorded: str | None, reproduced: str | None, libraries: dict[str, Any]) -> str:
    if identical:
        return "ONNX bytes identical"
    if recorded != reproduced:
        return (
            f"ONNX bytes differ because the model metadata embeds the git commit: the release was built at "
            f"{recorded}, the reproduction at {reproduced}; bytes can only be identical at the same commit"
        )
    if libraries:
        return f"ONNX bytes differ at the same commit; library versions differ: {sorted(libraries)}"
    return "ONNX bytes differ at the same commit with the same library versions: not reproducible bit for bit"


def _library_changes(recorded: Mapping[str, str]) -> dict[str, dict[str, str]]:
    from flows.lineage import library_versions

    now = library_versions()
    return {k: {"recorded": v, "now": now.get(k, "absent")} for k, v in recorded.items() if now.get(k, "absent") != v}


def build_report(bundle: Bundle, project_root: Path, run_dir: Path) -> dict[str, Any]:
    import pandas as pd

    from flows.lineage import frame_hash, git_commit

    lineage = bundle.manifest.lineage
    split = run_dir / "data" / "split"
    train, holdout = pd.read_parquet(split / "train.parquet"), pd.read_parquet(split / "holdout.parquet")
    reproduced = (run_dir / "data" / "model" / MODEL_FILE).read_bytes()
    identical = reproduced == bundle.model
    commits = {"recorded": _onnx_commit(bundle.model), "reproduced": _onnx_commit(reproduced)}
    libraries = _library_changes(lineage.libraries)
    data_hash = frame_hash(train)
    return {
        "version": bundle.manifest.version,
        "bundle": bundle.source,
        "data_hash_matches": data_hash == lineage.data_hash,
        "data_hash": {"recorded": lineage.data_hash, "reproduced": data_hash},
        **compare_predictions(bundle.model, reproduced, run_dir),
        "onnx_bytes_identical": identical,
        "onnx_sha256": {"release": _sha256(bundle.model), "reproduced": _sha256(reproduced)},
        "git_commit_recorded": lineage.git_commit,
        "git_commit_now": git_commit(project_root),
        "git_commit_reproduced": commits["reproduced"],
        "libraries_changed": libraries,
        "note": bytes_note(identical, commits["recorded"], commits["reproduced"], libraries),
        "rows": {"train": len(train), "holdout": len(holdout)},
    }


# --- entry points ----------------------------------------------------------------------------------


def _reproduce(bundle: Bundle, project_root: Path, workdir: Path | None) -> dict[str, Any]:
    started = time.perf_counter()
    project_root = Path(project_root).resolve()
    if not project_root.is_dir():
        raise UserError(f"{project_root}: project folder not found")
    entry = curated_entry(bundle.dvc_lock)
    work, created = prepare_workdir(workdir)
    try:
        run_dir = work / "project"
        restored = time.perf_counter()
        source = restore_snapshot(entry, project_root, work / "snapshot", work / "restored")
        checkout_project(project_root, run_dir)
        (run_dir / PARAMS).write_bytes(bundle.params_yaml)
        (run_dir / DVC_LOCK).write_bytes(bundle.dvc_lock)
        shutil.rmtree(run_dir / CURATED, ignore_errors=True)
        (run_dir / CURATED).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(work / "restored"), str(run_dir / CURATED))
        restore_seconds = time.perf_counter() - restored
        stage_seconds = run_stages(run_dir)
        report = build_report(bundle, project_root, run_dir)
    finally:
        if created:
            shutil.rmtree(work, ignore_errors=True)
    report["snapshot"] = {"path": CURATED, **entry, "source": source}
    report["workdir"] = None if created else str(work)
    report["seconds"] = {
        "restore": round(restore_seconds, 3),
        "stages": stage_seconds,
        "total": round(time.perf_counter() - started, 3),
    }
    return report


def reproduce_bundle(bundle_dir: Path, project_root: Path, workdir: Path | None = None) -> dict[str, Any]:
    """Reproduce the release in ``bundle_dir`` from the snapshot in ``project_root``'s DVC cache/remote.

    ``workdir`` (empty or absent) is kept for inspection; by default a temporary folder is used and
    removed. Raises UserError for a bundle that does not hold together or a snapshot that cannot be found.
    """
    bundle_dir = Path(bundle_dir)
    bundle = load_bundle({name: bundle_dir / name for name in REPRODUCE_FILES}, str(bundle_dir))
    return _reproduce(bundle, project_root, workdir)


def _latest_targets(repository: Path) -> dict[str, Any] | None:
    """The ``signed.targets`` of the newest targets metadata in ``repository/metadata``."""
    metadata = repository / "metadata"
    numbered = [(int(m.group(1)), p) for p in metadata.glob("*.targets.json") if (m := _TARGETS_METADATA.match(p.name))]
    path = max(numbered)[1] if numbered else metadata / "targets.json"
    if not path.is_file():
        return None
    try:
        targets: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["signed"]["targets"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not TUF targets metadata ({exc!r})") from None
    return targets


def _hashed_copies(folder: Path, name: str) -> dict[str, Path]:
    """``<sha256>.<name>`` files in ``folder`` whose content really has that sha256."""
    found = {}
    for path in folder.glob(f"*.{name}"):
        match = HASHED_TARGET_PATTERN.match(path.name)
        if match and match.group(2) == name and _sha256(path.read_bytes()) == match.group(1):
            found[match.group(1)] = path
    return found


def _pick(folder: Path, name: str, signed: Mapping[str, Any] | None) -> Path:
    copies = _hashed_copies(folder, name)
    expected = (signed or {}).get("hashes", {}).get("sha256")
    if expected:
        if expected not in copies:
            raise UserError(f"{folder}: no intact {expected}.{name}, which the targets metadata names")
        return copies[expected]
    if len(copies) == 1:
        return next(iter(copies.values()))
    if not copies and (folder / name).is_file():
        return folder / name  # a repository without consistent snapshots
    what = "several versions" if copies else "no intact copy"
    raise UserError(f"{folder}: {what} of {name} and no targets metadata entry to choose by")


def locate_release_files(repository: Path, version: int) -> dict[str, Path]:
    """The bundle files of release ``version`` in a TUF repository folder, matched to their sha256."""
    folder = Path(repository) / "targets" / "bundles" / str(version)
    if not folder.is_dir():
        raise UserError(f"release {version}: {folder} not found (`edgeloop release list` shows the releases)")
    targets = _latest_targets(Path(repository)) or {}
    return {name: _pick(folder, name, targets.get(bundle_target(version, name))) for name in REPRODUCE_FILES}


def reproduce_release(config: HasRepository, version: int, project_root: Path) -> dict[str, Any]:
    """Reproduce release ``version`` of the TUF repository ``config.repository`` (see reproduce_bundle)."""
    repository = Path(config.repository)
    if not repository.is_absolute():
        repository = Path(project_root) / repository
    files = locate_release_files(repository, version)
    bundle = load_bundle(files, f"release {version} ({repository / 'targets' / 'bundles' / str(version)})")
    report = _reproduce(bundle, project_root, None)
    report["release"] = version
    return report
