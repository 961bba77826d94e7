"""Where every stage reads and writes, relative to one project root.

One frozen dataclass so that tests can point a whole pipeline at a temporary folder and no stage
hard-codes a path. Creates nothing; stages create what they write.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    root: Path

    @classmethod
    def at(cls, root: Path | str = ".") -> Paths:
        return cls(Path(root).resolve())

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

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

    def resolve(self, relative: str) -> Path:
        """A params-provided path, relative to the root unless absolute."""
        p = Path(relative)
        return p if p.is_absolute() else self.root / p
