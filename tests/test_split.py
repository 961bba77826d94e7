"""split: the holdout is the newest rows; nothing in training is as new as the holdout."""

from __future__ import annotations

import pandas as pd
import pytest

from flows.params import parse_params
from flows.stages import StageError
from flows.stages.split import time_split


def frame(times: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "event_time": pd.to_datetime(times, utc=True),
            "device_id": [f"d{i % 2}" for i in range(len(times))],
            "event_id": range(len(times)),
        }
    )


def test_holdout_is_newest_and_shared_timestamps_stay_together(raw_params):
    schema = parse_params(raw_params).schema
    times = ["2026-01-05", "2026-01-01", "2026-01-03", "2026-01-04", "2026-01-04", "2026-01-02"]
    train, holdout = time_split(frame(times), schema, holdout_fraction=0.4)
    assert train["event_time"].max() < holdout["event_time"].min()
    assert len(train) + len(holdout) == len(times)
    assert sorted(holdout["event_time"].dt.day) == [4, 4, 5]  # both rows at the cut-off go to holdout
    assert list(train["event_time"]) == sorted(train["event_time"])


def test_nothing_to_train_on_is_an_error(raw_params):
    schema = parse_params(raw_params).schema
    with pytest.raises(StageError, match="nothing left to train on"):
        time_split(frame(["2026-01-01"] * 4), schema, holdout_fraction=0.25)
