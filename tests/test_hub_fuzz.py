"""Schema-driven fuzzing of the hub's API: schemathesis against the OpenAPI spec served by a real hub.

Every operation in ``/openapi.json`` gets a bounded number of generated requests (valid and invalid
bodies, paths, queries), each sent twice over real HTTP: once as generated (mostly refused: no token),
once with credentials that get past authentication (the admin token, or a registered device's token on
its own path), so bodies reach validation and the database. Nothing may answer 5xx. Also checks that
the spec's examples validate against their schemas. Bounded to stay well under a minute.
"""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from edgeloop.testkit.hub import running_hub
from hub import tokens
from hub.db import Device

pytestmark = pytest.mark.slow  # servers, processes or kill -9 loops: not in the fast lane

DEVICE = "fuzz-dev"
EXAMPLES_PER_OPERATION = 60


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    with running_hub(tmp_path_factory.mktemp("fuzzhub")) as handle:
        issued = tokens.issue()
        with handle.app.state.sessions() as session:
            session.add(Device(device_id=DEVICE, channel="canary", token_id=issued.token_id, token_salt=issued.salt,
                               token_digest=issued.digest, created_at=handle.clock.now()))
            session.commit()
        handle.device_token = issued.token  # type: ignore[attr-defined]
        yield handle


def _authenticated(case: Any, hub: Any) -> dict[str, str]:
    """Headers that pass authentication for this operation (the path's device set to ours)."""
    if "device_id" in (case.path_parameters or {}):
        case.path_parameters["device_id"] = DEVICE
        return {"Authorization": f"Bearer {hub.device_token}"}
    return {"Authorization": f"Bearer {hub.admin_token}"}


def _fuzz(operation: Any, hub: Any) -> None:
    strategy = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @given(case=strategy)
    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        as_generated = case.call(timeout=10)
        assert as_generated.status_code < 500, (case.as_curl_command(), as_generated.text)
        authenticated = case.call(headers=_authenticated(case, hub), timeout=10)
        assert authenticated.status_code < 500, (case.as_curl_command(), authenticated.text)

    run()


def test_no_request_makes_the_hub_fail(hub) -> None:
    """Positive and negative cases for every operation of the served spec; no 5xx anywhere."""
    api = schemathesis.openapi.from_url(f"{hub.url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /v1/devices/{device_id}/heartbeat", "GET /v1/fleet", "GET /releases/metadata/{path}"} <= labels
    for operation in operations:
        _fuzz(operation, hub)


def _examples(node: Any, where: str = "") -> list[tuple[str, dict[str, Any], Any]]:
    """(location, schema, example) for every schema in ``node`` that carries examples."""
    found: list[tuple[str, dict[str, Any], Any]] = []
    if isinstance(node, dict):
        if "example" in node:
            found.append((where, {k: v for k, v in node.items() if k != "example"}, node["example"]))
        if isinstance(node.get("examples"), list) and ("properties" in node or "type" in node or "$ref" in node):
            found += [(where, {k: v for k, v in node.items() if k != "examples"}, e) for e in node["examples"]]
        for key, value in node.items():
            found += _examples(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _examples(value, f"{where}/{index}")
    return found


def test_the_specs_examples_validate_against_their_schemas(hub) -> None:
    spec = httpx.get(f"{hub.url}/openapi.json").json()
    examples = _examples(spec.get("components", {}).get("schemas", {}), "#/components/schemas")
    examples += _examples(spec.get("paths", {}), "#/paths")
    assert any("HeartbeatBody" in where for where, _, _ in examples), "the heartbeat body has an example"
    for where, node, example in examples:
        resolvable = {**node, "components": spec.get("components", {})}
        errors = list(jsonschema.Draft202012Validator(resolvable, format_checker=jsonschema.FormatChecker())
                      .iter_errors(example))
        assert not errors, (where, [e.message for e in errors])
