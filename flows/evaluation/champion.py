"""Find the champion (the release the candidate must beat) and check it can be compared.

The champion is a folder (``params.evaluate.champion``) holding ``model.onnx`` and ``manifest.json`` of
the current release. No folder, or an empty one, means no champion. A manifest that does not parse, or
a model whose bytes do not match the manifest, is an error: comparing against a corrupt champion would
make the gate's champion rule meaningless. A champion built for other features or classes than
``params.schema`` cannot score today's holdout; it is skipped with a note the gate shows.

Leaves out: scoring (``flows.inference``), promoting a candidate to champion (publishing does that).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edge.contracts.manifest import Manifest, ManifestError, verify_model
from edge.contracts.release_layout import MANIFEST_FILE, MODEL_FILE
from edge.contracts.schema import DataSchema


class ChampionError(Exception):
    """The champion folder holds a release that cannot be trusted; the message says why."""


@dataclass(frozen=True)
class Champion:
    version: str
    model: bytes
    manifest: Manifest


@dataclass(frozen=True)
class ChampionLookup:
    champion: Champion | None
    note: str | None  # why there is no champion to compare against, when there is none


def find_champion(folder: Path, schema: DataSchema) -> ChampionLookup:
    model_path, manifest_path = folder / MODEL_FILE, folder / MANIFEST_FILE
    present = [p.name for p in (model_path, manifest_path) if p.is_file()]
    if not present:
        return ChampionLookup(None, "no champion")
    if len(present) == 1:
        return ChampionLookup(None, f"no champion: {folder} holds only {present[0]}")
    model = model_path.read_bytes()
    try:
        manifest = Manifest.from_json(manifest_path.read_bytes())
        verify_model(manifest, model)
    except ManifestError as exc:
        raise ChampionError(f"champion at {folder}: {exc}") from None
    mismatch = _schema_mismatch(manifest, schema)
    if mismatch:
        return ChampionLookup(None, f"champion {manifest.version} skipped: {mismatch}")
    return ChampionLookup(Champion(version=manifest.version, model=model, manifest=manifest), None)


def _schema_mismatch(manifest: Manifest, schema: DataSchema) -> str | None:
    if manifest.feature_names != schema.feature_names:
        return f"its features {manifest.feature_names} differ from params.schema {schema.feature_names}"
    if list(manifest.classes) != list(schema.label.classes):
        return f"its classes {list(manifest.classes)} differ from params.schema {list(schema.label.classes)}"
    return None
