"""Score rows with an exported ONNX model through onnxruntime, as an edge runner would.

Shared by export (parity with scikit-learn) and evaluate (candidate and champion quality), so that the
numbers the gate sees come from the artefact that ships, not from the Python estimator. Single
session, one thread by default. Leaves out: a batching policy and caching.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class OnnxScores:
    labels: np.ndarray  # class index per row (position in the model's class list)
    probabilities: np.ndarray  # float32 [rows, classes]


def load_session(model: Path | bytes, threads: int = 1) -> Any:  # onnxruntime.InferenceSession
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def score(model: Path | bytes, features: np.ndarray, threads: int = 1) -> OnnxScores:
    """Run the model on a float matrix (cast to float32). Labels are class indices 0..C-1."""
    session = load_session(model, threads)
    x = np.ascontiguousarray(features, dtype=np.float32)
    input_name = session.get_inputs()[0].name
    labels, probabilities = session.run(None, {input_name: x})
    return OnnxScores(labels=np.asarray(labels).astype(np.int64), probabilities=np.asarray(probabilities))
