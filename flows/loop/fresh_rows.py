"""How many fresh labelled rows a retrain needs before the gate can tell its candidate from the champion.

``loop.monitor.min_fresh_rows: auto`` makes the monitor's drift and accuracy triggers wait for
``fresh_rows_needed(...)`` rows landed since the last training, instead of a fixed number:

- the gate compares candidate and champion on the holdout, ``split.holdout_fraction`` of the rows (a random
  share of each class with the default ``stratified_random``, the newest rows with ``time``), so that share
  of the fresh rows judges the candidate (with ``time`` and a large history, more: the count is safe);
- the effect to detect is ``max(gate.champion_tolerance, drop)``, ``drop`` being how far the fleet's estimated
  accuracy fell below its level before (the current release's holdout accuracy): a big drop is easy to see;
- on ``n`` holdout rows, the paired difference of the two models' error rates has the normal 95% interval
  ``+- z sqrt(2 e (1 - e) / n)`` (``e``: the error rate, ``1 -`` the fleet's estimated accuracy; the two
  models' errors taken as independent, which overstates the variance when they err on the same rows, so
  the estimate errs towards more rows). Asking that half-width to be at most the effect gives
  ``n = ceil(2 z^2 e (1 - e) / effect^2)`` holdout rows, and ``ceil(n / holdout_fraction)`` fresh rows;
- rows count by their Kish effective number ``(sum w)^2 / sum w^2`` with ``w = 1/p`` (``effective_rows``):
  thirty uploaded mistakes (p = 1) tell less about the plant than thirty random rows;
- the result stays within ``[fresh_rows_floor, fresh_rows_cap]``.

The error rate stands in for the gate metric's noise (f1_macro on a rare class is noisier than accuracy;
the floor covers small holdouts). It leaves out gathering the inputs (``flows.loop.observe``) and applying
the requirement (``flows.loop.triggers``): pure functions only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["FreshNeed", "FreshRule", "effective_rows", "fresh_rows_needed"]

Z95 = 1.959963984540054
MIN_ERROR_RATE = 0.005  # a fleet estimated perfect still has some error the holdout must resolve


@dataclass(frozen=True)
class FreshRule:
    """What the gate judges with (params.yaml ``split`` and ``gate``): the monitor's view of it."""

    holdout_fraction: float = 0.2
    champion_tolerance: float = 0.01
    metric: str = "f1_macro"

    @classmethod
    def from_params(cls, params: Any) -> FreshRule:
        """From a ``flows.params.Params``."""
        return cls(params.split.holdout_fraction, params.gate.champion_tolerance, params.gate.metric)


@dataclass(frozen=True)
class FreshNeed:
    """The derived requirement and how it was reached."""

    rows: int  # fresh (effective) labelled rows needed, within floor and cap
    holdout_rows: int  # effective holdout rows the interval needs
    effect: float  # the difference to detect: max(tolerance, drop); also the interval's half-width
    drop: float | None  # estimated accuracy before - now (None: unknown)
    error_rate: float  # e in the variance 2 e (1 - e)
    metric: str
    holdout_fraction: float
    bounded_by: str | None  # "floor" or "cap" when the bound decided, else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self, have: float) -> str:
        """One line for the loop log: what is there, what is needed, and why."""
        why = "the accuracy drop" if self.drop is not None and self.drop >= self.effect else "the champion tolerance"
        bound = {"floor": ", raised to the floor", "cap": ", held at the cap"}.get(self.bounded_by or "", "")
        return (f"fresh rows {have:,.0f} of {self.rows:,} needed: the gate needs +-{self.effect:.3f} on "
                f"{self.metric} (effect = {why}; error rate {self.error_rate:.3f}; {self.holdout_rows:,} effective "
                f"holdout rows = {self.holdout_fraction:g} of the fresh rows{bound})")


def fresh_rows_needed(rule: FreshRule, error_rate: float, drop: float | None = None, floor: int = 0,
                      cap: int | None = None, z: float = Z95) -> FreshNeed:
    """Fresh effective rows the gate needs to tell candidate from champion (see the module docstring).

    ``error_rate``: 1 - the fleet's estimated accuracy; ``drop``: estimated accuracy before - now (None or
    negative: no drop seen); ``floor``/``cap``: bounds on the result."""
    if not 0.0 < rule.holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must lie in (0, 1), not {rule.holdout_fraction}")
    e = min(0.5, max(MIN_ERROR_RATE, float(error_rate)))
    effect = max(rule.champion_tolerance, drop if drop is not None and math.isfinite(drop) else 0.0)
    if effect <= 0.0 and cap is None:
        raise ValueError("a zero champion_tolerance with no accuracy drop needs a cap")
    # a zero tolerance and no drop: no holdout is big enough, only the cap bounds the wait
    holdout = math.ceil(2.0 * z * z * e * (1.0 - e) / (effect * effect)) if effect > 0.0 else 2**31
    raw = math.ceil(holdout / rule.holdout_fraction)
    bounded_by = None
    rows = raw
    if raw < floor:
        rows, bounded_by = floor, "floor"
    elif cap is not None and raw > cap:
        rows, bounded_by = cap, "cap"
    return FreshNeed(int(rows), int(holdout), round(effect, 6), None if drop is None else round(drop, 6),
                     round(e, 6), rule.metric, rule.holdout_fraction, bounded_by)


def effective_rows(rows: int, probabilities: np.ndarray | None = None) -> float:
    """Kish's effective number of ``rows`` labelled rows of which those with ``probabilities`` (inclusion
    probabilities, one per such row) weigh ``1/p`` and the rest weigh 1; a p that is missing or outside
    (0, 1] weighs 1."""
    p = np.asarray([] if probabilities is None else probabilities, dtype=np.float64)
    valid = np.isfinite(p) & (p > 0) & (p <= 1)
    w = np.where(valid, 1.0 / np.where(valid, p, 1.0), 1.0)
    plain = max(0, int(rows) - int(p.size))
    total = float(w.sum()) + plain
    squares = float((w**2).sum()) + plain
    return 0.0 if squares == 0 else total * total / squares
