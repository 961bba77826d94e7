"""Where the live plant puts each signal: OPC UA node ids and MQTT topics, one place for both protocols.

Per machine (``press-07``): one signal per sensor feature (the schema's names), ``part_id`` (changes
for each new part, written after the features), the quality station's ``quality.part_id`` and
``quality.verdict`` (the true label of that part, written after its part id), and the prediction
signals the runner writes back: ``prediction.part_id``, ``prediction.label``,
``prediction.probability``, ``prediction.model_version``.

OPC UA: namespace ``urn:edgeloop:plant`` (index 2 on this server), string node ids
``ns=2;s=press-07.air_temp_k``. MQTT: one JSON message per part on ``plant/press-07/part``
(``{"part_id": n, "at": t, "air_temp_k": x, ...}``, null for a lost reading), verdicts on
``plant/press-07/quality`` (``{"part_id": n, "verdict": 0, "at": t}``), predictions expected on
``plant/press-07/prediction``. Leaves out servers, publishers and the runner's config (``runner_config``).
"""

from __future__ import annotations

__all__ = [
    "KEY", "NAMESPACE", "NAMESPACE_INDEX", "PREDICTION_FIELDS", "QUALITY_KEY", "QUALITY_VERDICT", "TOPIC_ROOT",
    "node_id", "signal", "topic",
]

NAMESPACE = "urn:edgeloop:plant"
NAMESPACE_INDEX = 2  # the first namespace a fresh asyncua server registers after its own
KEY = "part_id"
QUALITY_KEY = "quality.part_id"
QUALITY_VERDICT = "quality.verdict"
PREDICTION_FIELDS = ("part_id", "label", "probability", "model_version")  # written back by the runner
TOPIC_ROOT = "plant"


def signal(device: str, name: str) -> str:
    """The string identifier of one signal: ``press-07.air_temp_k``."""
    return f"{device}.{name}"


def node_id(device: str, name: str) -> str:
    """The OPC UA node id of one signal: ``ns=2;s=press-07.air_temp_k``."""
    return f"ns={NAMESPACE_INDEX};s={signal(device, name)}"


def topic(device: str, kind: str) -> str:
    """The MQTT topic of a machine's ``part``, ``quality`` or ``prediction`` messages."""
    return f"{TOPIC_ROOT}/{device}/{kind}"

