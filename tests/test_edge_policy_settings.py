"""A signed runner policy's settings: checked and applied through runner.toml's own readers and rules.

Covers: problems name ``section.key`` (unknown keys, bad values, rules between keys); applying gives a new
config and never half-applies; pinned keys keep the local value and are reported; privacy rules only get
stricter unless the runner allows looser; every key the contract lets a policy set has a runner.toml key;
the new runner.toml keys ([policy], [watch], drift thresholds, the daily byte budget) and their errors.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge import drift
from edge.config import ConfigError, RunnerConfig, keys_of, load_config, sections
from edge.contracts.runner_policy import PRIVACY_KEYS, REMOTE_KEYS
from edge.policy_settings import apply_settings, check_settings, plan_settings, reader_of

MINIMAL = """
device_id = "press-07"
state_dir = "state"
[hub]
url = "http://127.0.0.1:8700/"
token_file = "token"
[releases]
trusted_root = "root.json"
"""


def config_of(folder: Path, extra: str = "") -> RunnerConfig:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "token").write_text("elt_press-07_secretsecret\n")
    os.chmod(folder / "token", 0o600)
    (folder / "root.json").write_text("{}")
    (folder / "runner.toml").write_text(MINIMAL + extra)
    return load_config(folder / "runner.toml", environ={})


def test_every_remote_key_has_a_runner_toml_reader() -> None:
    known = sections()
    for section, keys in REMOTE_KEYS.items():
        assert section in known, f"{section}: a policy may set it but runner.toml has no such section"
        for key in keys:
            assert key in keys_of(known[section]), f"{section}.{key}: in REMOTE_KEYS but not in edge/config.py"
            assert callable(reader_of(section, key))
    for name in PRIVACY_KEYS:
        section, _, key = name.partition(".")
        assert key in REMOTE_KEYS[section]


def test_drift_threshold_defaults_are_the_drift_modules() -> None:
    from edge.config import DriftConfig

    assert (DriftConfig.moderate_psi, DriftConfig.major_psi) == (drift.MODERATE, drift.MAJOR)


def test_check_names_every_problem() -> None:
    problems = check_settings({"upload": {"random_rate": 1.5, "token_file": "x"},
                               "drift": {"moderate_psi": 0.3}, "api": {"port": 1}, "watch": {"min_feedback": 0}})
    text = "\n".join(problems)
    assert len(problems) == 5, problems
    for key in ("upload.random_rate", "upload.token_file", "drift.moderate_psi", "api", "watch.min_feedback"):
        assert key in text
    assert check_settings({"upload": {"random_rate": 0.3, "local_only": ["serial"], "daily_byte_budget": 10_000},
                           "watch": {"accuracy_floor": 0.8, "window_s": None},
                           "releases": {"poll_interval_s": 30}, "hub": {"heartbeat_interval_s": 5}}) == []
    assert check_settings([1]) and check_settings({"upload": 3})


def test_apply_gives_a_new_config_and_never_half_applies(tmp_path: Path) -> None:
    config = config_of(tmp_path)
    new = apply_settings(config, {"upload": {"random_rate": 0.4, "batch_rows": 50},
                                  "drift": {"window_rows": 800, "min_rows": 100, "major_psi": 0.5},
                                  "watch": {"accuracy_floor": 0.9}, "hub": {"heartbeat_interval_s": 7}})
    assert (new.upload.random_rate, new.upload.batch_rows) == (0.4, 50)
    assert (new.drift.window_rows, new.drift.min_rows, new.drift.major_psi) == (800, 100, 0.5)
    assert new.watch.accuracy_floor == 0.9 and new.watch.window_s is None
    assert new.hub.heartbeat_interval_s == 7 and new.hub.url == config.hub.url
    assert config.upload.random_rate == 0.02  # the input is untouched
    with pytest.raises(ConfigError, match=r"drift\.min_rows"):  # the runner's own min_rows (1000) > 500
        apply_settings(config, {"upload": {"random_rate": 0.4}, "drift": {"window_rows": 500}})
    with pytest.raises(ConfigError, match=r"upload\.mode"):
        apply_settings(config, {"upload": {"mode": "everything"}})


def test_pinned_keys_keep_the_local_value_and_are_reported(tmp_path: Path) -> None:
    config = config_of(tmp_path, '[policy]\npinned = ["upload.random_rate"]\n')
    assert config.policy.pinned == ("upload.random_rate",)
    plan = plan_settings(config, {"upload": {"random_rate": 0.5, "batch_rows": 10}}, pinned=config.policy.pinned)
    assert plan.config.upload.random_rate == 0.02 and plan.config.upload.batch_rows == 10
    assert plan.kept == {"upload.random_rate": 0.02}
    assert plan.settings == {"upload": {"batch_rows": 10}}


def test_privacy_only_gets_stricter_unless_allowed(tmp_path: Path) -> None:
    config = config_of(tmp_path, '[upload]\nlocal_only = ["operator", "serial"]\nmode = "aggregates"\n')
    stricter = apply_settings(config, {"upload": {"local_only": ["operator", "serial", "batch"]}})
    assert stricter.upload.local_only == ("operator", "serial", "batch")
    with pytest.raises(ConfigError, match=r"upload\.local_only: a policy may only make .* stricter"):
        apply_settings(config, {"upload": {"local_only": ["operator"]}})
    with pytest.raises(ConfigError, match=r"upload\.mode"):
        apply_settings(config, {"upload": {"mode": "rows"}})
    looser = apply_settings(config, {"upload": {"mode": "rows", "local_only": []}}, allow_looser_privacy=True)
    assert looser.upload.mode == "rows" and looser.upload.local_only == ()
    # a pinned privacy key is kept, so nothing is loosened
    kept = apply_settings(config, {"upload": {"mode": "rows"}}, pinned=("upload.mode",))
    assert kept.upload.mode == "aggregates"


@pytest.mark.parametrize(("extra", "message"), [
    ('[policy]\npinned = ["hub.url"]\n', r"policy\.pinned: 'hub\.url' is not a key a signed policy may set"),
    ("[policy]\nallow_looser_privacy = 1\n", r"policy\.allow_looser_privacy: expected true or false"),
    ("[drift]\nmoderate_psi = 0.3\nmajor_psi = 0.2\n", r"drift\.moderate_psi: must be < drift\.major_psi"),
    ("[watch]\naccuracy_floor = 1.2\n", r"watch\.accuracy_floor"),
    ("[watch]\nwindow = 3\n", r"watch\.window: unknown key"),
    ("[upload]\ndaily_byte_budget = -1\n", r"upload\.daily_byte_budget"),
])
def test_new_runner_toml_keys_name_their_errors(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_of(tmp_path, extra)


def test_new_runner_toml_keys_defaults(tmp_path: Path) -> None:
    config = config_of(tmp_path)
    assert config.policy.enabled and config.policy.pinned == () and not config.policy.allow_looser_privacy
    assert config.upload.daily_byte_budget == 0
    assert (config.watch.accuracy_floor, config.watch.window_s, config.watch.min_feedback,
            config.watch.max_model_errors) == (None, None, None, None)
