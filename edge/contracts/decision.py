"""The decision rule: which class a model's probabilities mean, the same on the device and in the cloud.

Binary model: the positive class when its probability, compared as a float64, is ``>= threshold``,
otherwise the other class. More than two classes: the most probable class, the first one on ties (as
numpy's and ONNX's argmax). ``decide_one`` is the hot-path form (a Python list of floats, one row);
``decide_many`` the array form (evaluation, batches). Both return class *indices* in model output order.
Leaves out where the threshold comes from (``gate.decision_threshold`` in params.yaml, then the manifest).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["decide_many", "decide_one", "positive_index"]


def positive_index(classes: Sequence[object], positive_class: object | None) -> int | None:
    """Index of the positive class for a binary model; None for more than two classes."""
    if len(classes) != 2 or positive_class is None:
        return None
    return list(classes).index(positive_class)


def decide_one(probabilities: Sequence[float], positive: int | None, threshold: float) -> int:
    """Class index for one row's probabilities."""
    if positive is not None:
        return positive if probabilities[positive] >= threshold else 1 - positive
    return max(range(len(probabilities)), key=probabilities.__getitem__)  # first index on ties


def decide_many(probabilities: np.ndarray, positive: int | None, threshold: float) -> np.ndarray:
    """Class index per row (int64) of a [rows, classes] probability array."""
    probs = np.asarray(probabilities)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"expected probabilities of shape [rows, classes>=2], got {probs.shape}")
    if probs.shape[1] == 2 and positive is not None:
        if positive not in (0, 1):
            raise ValueError(f"binary decision needs a positive class index 0 or 1, got {positive}")
        above = probs[:, positive].astype(np.float64) >= threshold
        return np.where(above, positive, 1 - positive).astype(np.int64)
    if probs.shape[1] == 2:
        raise ValueError("binary decision needs a positive class index 0 or 1, got None")
    chosen: np.ndarray = np.argmax(probs, axis=1).astype(np.int64)
    return chosen
