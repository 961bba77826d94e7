"""What the efficacy benchmark counts, from the rows every device predicted (``World.rows``).

- ``before``: fleet accuracy on the simulator's truth over every prediction of the 24 plant hours before
  the onset.
- ``trailing``: per hour, the fleet accuracy over the last ``window_h`` hours (every prediction of every
  device in them), so one hour's noise does not count as loss or recovery; the same window for every policy.
- ``loss_point_hours``: sum over the hours from the onset to the end of ``max(0, before - trailing)``,
  in accuracy points (percent) times hours.
- ``recovered_h``: hours from the onset to the first hour from which the trailing accuracy stays within
  1 point of ``before`` for the next 24 hours (all inside the run); None when that never happens.
- ``bytes_ratio``: bytes uploaded (gzip'd upload batches as the runner sends them) over raw bytes (CSV of
  features + label of every row every device saw, one header per device: bench/loop_demo.py's measure).
- ``releases``: releases published after v1 (to canary, or to the fleet for nightly and oracle).
- ``bad_on_stable``: releases that served on stable devices (every device for nightly and oracle) and,
  on the truth of the rows they served there, scored ``gate.metric`` more than ``gate.champion_tolerance``
  below the release they replaced on the same rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from flows.evaluation.quality import sklearn_quality

if TYPE_CHECKING:
    from bench.efficacy.policies import Policy
    from bench.efficacy.run import World

__all__ = ["WINDOW_H", "measure"]

WINDOW_H = 6
RECOVERY_HOLD_H = 24
WITHIN = 0.01


def hourly(world: World) -> tuple[np.ndarray, np.ndarray]:
    correct = np.zeros(world.hours)
    total = np.zeros(world.hours)
    for rows in world.rows:
        correct[rows.hour] += rows.correct.sum()
        total[rows.hour] += len(rows.correct)
    return correct, total


def trailing(correct: np.ndarray, total: np.ndarray, window_h: int) -> np.ndarray:
    c, t = np.cumsum(correct), np.cumsum(total)
    c_prev = np.concatenate([np.zeros(window_h), c[:-window_h]]) if len(c) > window_h else np.zeros_like(c)
    t_prev = np.concatenate([np.zeros(window_h), t[:-window_h]]) if len(t) > window_h else np.zeros_like(t)
    return (c - c_prev) / np.maximum(t - t_prev, 1)


def recovered_at(acc: np.ndarray, onset: int, before: float) -> int | None:
    ok = acc >= before - WITHIN - 1e-12
    for hour in range(onset, len(acc) - RECOVERY_HOLD_H + 1):
        if ok[hour : hour + RECOVERY_HOLD_H].all():
            return hour - onset
    return None


def bad_releases(world: World, policy: Policy) -> list[dict[str, Any]]:
    """Releases that served on stable and did worse there than the one they replaced (see the docstring)."""
    stable_groups = {"canary", "stable"} if policy.force else {"stable"}
    order: list[str] = []
    for rows in sorted(world.rows, key=lambda r: r.hour):
        if rows.group in stable_groups and (not order or order[-1] != rows.version) and rows.version not in order:
            order.append(rows.version)
    metric, tolerance = world.params.gate.metric, world.params.gate.champion_tolerance
    found = []
    for before, after in zip(order, order[1:], strict=False):
        served = [r for r in world.rows if r.group in stable_groups and r.version == after]
        x = np.concatenate([r.x for r in served])
        y = np.concatenate([r.y for r in served])
        new = sklearn_quality(y, world.models[int(after)].predict_codes(x)[0])[metric]
        old = sklearn_quality(y, world.models[int(before)].predict_codes(x)[0])[metric]
        if new < old - tolerance:
            found.append({"release": int(after), "replaced": int(before), metric: round(new, 4),
                          "replaced_" + metric: round(old, 4), "rows": len(y)})
    return found


def measure(world: World, policy: Policy, window_h: int = WINDOW_H) -> dict[str, Any]:
    correct, total = hourly(world)
    onset = world.onset_hour
    before = float(correct[:onset].sum() / total[:onset].sum())
    acc = trailing(correct, total, window_h)
    loss = float(np.maximum(0.0, before - acc[onset:]).sum() * 100.0)
    uploaded = sum(d.uploaded_bytes for d in world.devices)
    raw = sum(d.raw_bytes for d in world.devices)
    bad = bad_releases(world, policy)
    return {
        "before": round(before, 5),
        "after_end": round(float(acc[-1]), 5),
        "lowest": round(float(acc[onset:].min()), 5),
        "loss_point_hours": round(loss, 2),
        "recovered_h": recovered_at(acc, onset, before),
        "uploaded_bytes": uploaded,
        "raw_bytes": raw,
        "bytes_ratio": round(uploaded / raw, 5) if raw else None,
        "uploaded_rows": sum(d.uploaded_rows for d in world.devices),
        "releases": policy.published,
        "bad_on_stable": len(bad),
        "bad_detail": bad,
        "hourly_accuracy": [round(float(v), 4) for v in (correct / np.maximum(total, 1))],
    }
