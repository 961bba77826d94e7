"""The project folder: where every part reads and writes, relative to one root.

One frozen dataclass so that tests can point a whole project at a temporary folder and nothing hard-codes
a path. It is a contract between the hub (writes ``data/uploads``, reads ``data/loop/estimates.json``),
the pipeline (reads the landing zone, writes everything else under ``data/``) and the CLI. Paths that
params.yaml names (release repository, keys, the loop log, the hub database) are resolved with
``resolve``. Creates nothing; whoever writes a folder creates it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["PARAMS_FILE", "Paths"]

PARAMS_FILE = "params.yaml"


@dataclass(frozen=True)
class Paths:
    root: Path

    @classmethod
    def at(cls, root: Path | str = ".") -> Paths:
        return cls(Path(root).resolve())

    @property
    def params(self) -> Path:
        return self.root / PARAMS_FILE

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def uploads(self) -> Path:
        """The landing zone: raw, immutable batches from devices (hub, simulator, hand drops)."""
        return self.data / "uploads"

    @property
    def simulated(self) -> Path:
        """Default history written by the simulate stage, laid out like the landing zone."""
        return self.data / "simulated"

    @property
    def curated(self) -> Path:
        """Validated batches, one part per batch, plus the ingest ledger."""
        return self.data / "curated"

    @property
    def quarantine(self) -> Path:
        return self.data / "quarantine"

    @property
    def split(self) -> Path:
        return self.data / "split"

    @property
    def model(self) -> Path:
        """Trained estimator (model.pkl) and its ONNX export (model.onnx)."""
        return self.data / "model"

    @property
    def metrics(self) -> Path:
        """DVC metrics: one JSON file per stage that reports numbers."""
        return self.data / "metrics"

    @property
    def plots(self) -> Path:
        return self.data / "plots"

    @property
    def reports(self) -> Path:
        """Human-facing HTML: Data Docs, Evidently reports."""
        return self.data / "reports"

    @property
    def candidate(self) -> Path:
        """The gate's output: release candidate folder (model.onnx, manifest.json, decision)."""
        return self.data / "candidate"

    @property
    def estimates(self) -> Path:
        """The loop's fleet estimates (IPW accuracy, label balance): written by flows, shown by the hub."""
        return self.data / "loop" / "estimates.json"

    @property
    def hub_summaries(self) -> Path:
        """Summaries of aggregates-only devices: ``<device_id>/<sha256>.json``, written by the hub."""
        return self.data / "hub" / "summaries"

    def resolve(self, relative: str) -> Path:
        """A params-provided path, relative to the root unless absolute."""
        p = Path(relative)
        return p if p.is_absolute() else self.root / p
