"""One machine's physics: operating regimes, sensors, tool and bearing wear, failures and drift.

A machine switches between operating regimes (a Markov chain over dwell-time segments); each regime
sets the speed and torque distributions and how fast the tool wears. Air temperature follows a daily
cycle plus slow weather; the process runs about 10 K hotter, a margin that shrinks under load. Tool
wear grows with running time and resets at each tool change; bearings degrade until they are replaced,
and vibration grows with speed, load and bearing damage. The ``failure`` label follows AI4I-2020 style
rules on the *true* sensor values (heat dissipation, power, overstrain, tool wear, bearing), with a
little label noise; dropouts (NaN) and sensor drift only touch what the sensors *report*.

Everything is vectorised per machine with numpy; only regime segments, tools and bearings are looped
over, never rows. Every random draw comes from its own stream spawned from the caller's
``SeedSequence``, so a drift that changes one part (say, the regimes) leaves all other draws alone.
Leaves out ids, timestamps, frames and files (``simulator.fleet``) and any knowledge of params.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SENSOR_COLUMNS: tuple[str, ...] = (
    "air_temp_k",
    "process_temp_k",
    "speed_rpm",
    "torque_nm",
    "tool_wear_min",
    "vibration_mm_s",
)
LABEL_COLUMN = "failure"
CLASSES: tuple[int, ...] = (0, 1)
DRIFT_KINDS: tuple[str, ...] = ("none", "sensor_offset", "new_regime", "relationship")

# Physical range each sensor is clipped to (the same ranges as the default params.yaml schema).
SENSOR_RANGES: dict[str, tuple[float, float]] = {
    "air_temp_k": (250.0, 350.0),
    "process_temp_k": (250.0, 400.0),
    "speed_rpm": (0.0, 5000.0),
    "torque_nm": (0.0, 200.0),
    "tool_wear_min": (0.0, 600.0),
    "vibration_mm_s": (0.0, 100.0),
}

OFFSET_SENSOR = "air_temp_k"  # sensor_offset drift: this sensor reads high ...
OFFSET_AMOUNT = 8.0  # ... by this much (K); the physics is unchanged
DROPOUT_SHARE = 0.01  # share of sensor readings lost (NaN), in short bursts
DROPOUT_BURST = 3  # rows per dropout burst
LABEL_NOISE = 0.003  # share of labels flipped
_DAY_S = 86_400.0
_RAD_PER_RPM = 2.0 * np.pi / 60.0


@dataclass(frozen=True)
class Regime:
    """How a machine runs while in one operating regime."""

    name: str
    speed_rpm: tuple[float, float]  # mean, standard deviation
    torque_nm: tuple[float, float]
    wear_per_min: float  # tool wear (min) per minute of running
    dwell_s: float  # mean time spent in the regime before switching


REGIMES: tuple[Regime, ...] = (
    Regime("light", (1650.0, 100.0), (32.0, 5.0), 0.8, 3 * 3600.0),
    Regime("nominal", (1500.0, 100.0), (41.0, 6.0), 1.0, 4 * 3600.0),
    Regime("high_load", (1380.0, 90.0), (50.0, 6.0), 1.3, 2 * 3600.0),
)
NEW_REGIME = Regime("overspeed", (2800.0, 150.0), (18.0, 3.0), 1.1, 6 * 3600.0)

# Row r: probability of switching from regime r to each regime (no self-transitions: dwell covers that).
TRANSITIONS = np.array(
    [
        [0.0, 0.7, 0.3],
        [0.5, 0.0, 0.5],
        [0.3, 0.7, 0.0],
    ]
)
# After a new_regime drift: the overspeed regime (last) takes most of the time.
TRANSITIONS_WITH_NEW = np.array(
    [
        [0.0, 0.2, 0.1, 0.7],
        [0.1, 0.0, 0.2, 0.7],
        [0.1, 0.2, 0.0, 0.7],
        [0.3, 0.5, 0.2, 0.0],
    ]
)


@dataclass(frozen=True)
class FailurePhysics:
    """Thresholds of the failure modes (AI4I-2020 style, plus bearings)."""

    hdf_temp_diff_k: float = 8.6  # heat dissipation: process-air difference below this ...
    hdf_speed_rpm: float = 1380.0  # ... while the spindle turns slower than this
    power_min_w: float = 3500.0  # power failure: torque * angular speed outside [min, max]
    power_max_w: float = 9000.0
    overstrain_min_nm: float = 10500.0  # overstrain: tool wear * torque above this
    tool_wear_fail_min: float = 225.0  # tool-wear failure past this wear
    vibration_fail_mm_s: float = 7.1  # bearing failure: vibration above this (ISO 10816 zone D)


PHYSICS = FailurePhysics()
# After a relationship drift: the tool material changed and overstrains much earlier.
DRIFTED_PHYSICS = FailurePhysics(overstrain_min_nm=6500.0)


@dataclass(frozen=True)
class Streams:
    """Independent random streams, one per part of the machine."""

    regimes: np.random.Generator
    drift_regimes: np.random.Generator
    operation: np.random.Generator
    climate: np.random.Generator
    tools: np.random.Generator
    bearings: np.random.Generator
    labels: np.random.Generator
    dropouts: np.random.Generator

    @classmethod
    def spawn(cls, seed: np.random.SeedSequence) -> Streams:
        names = list(cls.__dataclass_fields__)
        return cls(**{n: np.random.default_rng(s) for n, s in zip(names, seed.spawn(len(names)), strict=True)})


def regime_sequence(
    rng: np.random.Generator,
    rows: int,
    interval_s: float,
    regimes: tuple[Regime, ...],
    transitions: np.ndarray,
) -> np.ndarray:
    """Regime index of each row: a Markov chain with exponential dwell times (loops over segments)."""
    out = np.empty(rows, dtype=np.int64)
    state = int(rng.integers(len(regimes)))
    pos = 0
    while pos < rows:
        length = max(1, int(np.ceil(rng.exponential(regimes[state].dwell_s) / interval_s)))
        out[pos : pos + length] = state
        pos += length
        state = int(rng.choice(len(regimes), p=transitions[state]))
    return out


def sawtooth(
    rng: np.random.Generator, increments: np.ndarray, life: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative ``increments`` that restart whenever they pass a life drawn from ``life`` (low, high).

    Returns (age, life) per row. The first life starts part-way through (a machine is not brand new
    when observed). Loops over lives, not rows.
    """
    total = np.cumsum(increments)
    age = np.empty_like(total)
    lives = np.empty_like(total)
    base = -rng.uniform(0.0, life[0])  # part of the first life is used up already
    pos = 0
    while pos < len(total):
        length = rng.uniform(*life)
        end = max(pos + 1, int(np.searchsorted(total, base + length, side="right")))
        age[pos:end] = total[pos:end] - base
        lives[pos:end] = length
        base = total[end - 1]
        pos = end
    return age, lives


def slow_noise(rng: np.random.Generator, t_s: np.ndarray, every_s: float, scale: float) -> np.ndarray:
    """Smooth random variation: normal knots every ``every_s`` seconds, linearly interpolated."""
    knots_t = np.arange(0.0, (t_s[-1] if len(t_s) else 0.0) + 2 * every_s, every_s)
    return np.asarray(np.interp(t_s, knots_t, rng.normal(0.0, scale, len(knots_t))), dtype=np.float64)


def operate(
    streams: Streams, regime_idx: np.ndarray, regimes: tuple[Regime, ...], interval_s: float, clock_s: float
) -> dict[str, np.ndarray]:
    """True sensor values for a run through ``regime_idx``; ``clock_s`` is the start's time of day (s)."""
    rows = len(regime_idx)
    t_s = np.arange(rows) * interval_s
    rng = streams.operation
    speed = _draw(rng, regime_idx, np.array([r.speed_rpm for r in regimes]))
    torque = np.maximum(0.5, _draw(rng, regime_idx, np.array([r.torque_nm for r in regimes])))

    climate = streams.climate
    day = 2.0 * np.pi * ((t_s + clock_s) / _DAY_S - 15.0 / 24.0)  # warmest at 15:00
    air = 298.0 + climate.normal(0.0, 1.0) + 3.0 * np.cos(day) + slow_noise(climate, t_s, 6 * 3600.0, 1.5)
    air = air + climate.normal(0.0, 0.1, rows)
    cooling = slow_noise(climate, t_s, 1800.0, 0.9) + climate.normal(0.0, 0.2, rows)
    process = air + 10.0 + cooling - 0.03 * (torque - 40.0)

    wear_per_row = np.array([r.wear_per_min for r in regimes])[regime_idx] * (interval_s / 60.0)
    wear, _ = sawtooth(streams.tools, wear_per_row, (170.0, 240.0))
    bearing_age, bearing_life = sawtooth(streams.bearings, np.full(rows, interval_s), (60 * 3600.0, 160 * 3600.0))
    damage = 5.0 * np.clip(bearing_age / bearing_life, 0.0, 1.0) ** 10
    vibration = 1.6 * (np.clip(speed, 0.0, None) / 1500.0) ** 1.5 + 0.02 * torque + damage
    vibration = vibration + np.abs(streams.bearings.normal(0.0, 0.25, rows))
    return {
        "air_temp_k": air,
        "process_temp_k": process,
        "speed_rpm": speed,
        "torque_nm": torque,
        "tool_wear_min": wear,
        "vibration_mm_s": vibration,
    }


def _draw(rng: np.random.Generator, regime_idx: np.ndarray, mean_sd: np.ndarray) -> np.ndarray:
    """Normal draws whose (mean, sd) follow each row's regime; one standard normal per row."""
    noise = rng.standard_normal(len(regime_idx))
    return np.asarray(mean_sd[regime_idx, 0] + mean_sd[regime_idx, 1] * noise, dtype=np.float64)


def failure_modes(sensors: dict[str, np.ndarray], physics: FailurePhysics) -> dict[str, np.ndarray]:
    """Which failure mode each row shows, from true sensor values."""
    power_w = sensors["torque_nm"] * sensors["speed_rpm"] * _RAD_PER_RPM
    diff = sensors["process_temp_k"] - sensors["air_temp_k"]
    return {
        "heat_dissipation": (diff < physics.hdf_temp_diff_k) & (sensors["speed_rpm"] < physics.hdf_speed_rpm),
        "power": (power_w < physics.power_min_w) | (power_w > physics.power_max_w),
        "overstrain": sensors["tool_wear_min"] * sensors["torque_nm"] > physics.overstrain_min_nm,
        "tool_wear": sensors["tool_wear_min"] > physics.tool_wear_fail_min,
        "bearing": sensors["vibration_mm_s"] > physics.vibration_fail_mm_s,
    }


def failure_label(rng: np.random.Generator, sensors: dict[str, np.ndarray], drifted: np.ndarray) -> np.ndarray:
    """0/1 failure label: any failure mode (``DRIFTED_PHYSICS`` where ``drifted``), then label noise."""
    before = np.logical_or.reduce(list(failure_modes(sensors, PHYSICS).values()))
    after = np.logical_or.reduce(list(failure_modes(sensors, DRIFTED_PHYSICS).values()))
    failed = np.where(drifted, after, before)
    flip = rng.random(len(failed)) < LABEL_NOISE
    return (failed ^ flip).astype(np.int64)


def dropout_mask(rng: np.random.Generator, rows: int, columns: int) -> np.ndarray:
    """[rows, columns] True where a reading is lost: bursts of ``DROPOUT_BURST`` rows per sensor."""
    starts = rng.random((rows, columns)) < DROPOUT_SHARE / DROPOUT_BURST
    lost = starts.copy()
    for lag in range(1, DROPOUT_BURST):
        lost[lag:] |= starts[:-lag]
    return lost


def drift_row(rows: int, drift_start: float) -> int:
    """First row index a drift applies to."""
    if not 0.0 <= drift_start <= 1.0:
        raise ValueError(f"drift_start must be within [0, 1], got {drift_start}")
    return int(round(drift_start * rows))


def run_machine(
    seed: np.random.SeedSequence,
    rows: int,
    interval_s: float,
    clock_s: float = 0.0,
    drift: str = "none",
    drift_start: float = 0.75,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(reported sensor readings with NaN dropouts, failure label) for ``rows`` time steps."""
    if drift not in DRIFT_KINDS:
        raise ValueError(f"unknown drift {drift!r}; choose one of: {', '.join(DRIFT_KINDS)}")
    if interval_s <= 0:
        raise ValueError(f"interval_s must be positive, got {interval_s}")
    streams = Streams.spawn(seed)
    first = drift_row(rows, drift_start)
    regimes = REGIMES
    regime_idx = regime_sequence(streams.regimes, rows, interval_s, REGIMES, TRANSITIONS)
    if drift == "new_regime":
        regimes = (*REGIMES, NEW_REGIME)
        regime_idx[first:] = regime_sequence(
            streams.drift_regimes, rows - first, interval_s, regimes, TRANSITIONS_WITH_NEW
        )
    raw = operate(streams, regime_idx, regimes, interval_s, clock_s)
    truth = {c: np.clip(v, *SENSOR_RANGES[c]) for c, v in raw.items()}
    drifted = np.zeros(rows, dtype=bool)
    drifted[first:] = drift == "relationship"
    label = failure_label(streams.labels, truth, drifted)
    reported = {c: v.copy() for c, v in truth.items()}
    if drift == "sensor_offset":
        low, high = SENSOR_RANGES[OFFSET_SENSOR]
        reported[OFFSET_SENSOR][first:] = np.clip(reported[OFFSET_SENSOR][first:] + OFFSET_AMOUNT, low, high)
    lost = dropout_mask(streams.dropouts, rows, len(SENSOR_COLUMNS))
    for j, column in enumerate(SENSOR_COLUMNS):
        reported[column][lost[:, j]] = np.nan
    return reported, label
