"""params.yaml: loads into a frozen model; every mistake names its key in one line."""

from __future__ import annotations

import pydantic
import pytest

from edgeloop.testkit.project import REPO, override
from flows.params import ParamsError, load_params, parse_params


def test_repository_params_load_and_are_frozen():
    params = load_params(REPO / "params.yaml")
    assert params.schema.feature_names[0] == "air_temp_k"
    assert params.schema.label.positive_class == 1
    with pytest.raises(pydantic.ValidationError):
        params.train.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train.hgb.max_iterr": 5}, "train.hgb.max_iterr: unknown key"),
        ({"train.seed": "seven"}, "train.seed: Input should be a valid integer"),
        ({"train.model": "xgboost"}, "train.model: Input should be 'hgb', 'rf' or 'logreg'"),
        ({"split.holdout_fraction": 1.5}, "split.holdout_fraction"),
        ({"gate.metric": "f2"}, "gate.metric"),
        ({"schema.label.positive": 7}, "positive 7 is not among classes"),
        ({"schema.event_id": "air_temp_k"}, "column names used twice: ['air_temp_k']"),
        ({"surprise": {}}, "surprise: unknown key"),
    ],
)
def test_mistakes_name_the_key(raw_params, change, message):
    with pytest.raises(ParamsError) as caught:
        parse_params(override(raw_params, change))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_section_is_named(raw_params):
    del raw_params["gate"]
    with pytest.raises(ParamsError, match="gate: required key is missing"):
        parse_params(raw_params)


def test_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("schema: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")


def test_section_hash_tracks_only_the_named_sections(raw_params):
    base = parse_params(raw_params)
    changed = parse_params(override(raw_params, {"gate.min_quality": 0.9}))
    assert base.section_hash("train") == changed.section_hash("train")
    assert base.section_hash() != changed.section_hash()
    assert base.schema.fingerprint() == changed.schema.fingerprint()
