"""The runner.toml ``[inputs]`` section that wires one runner to one machine of the live plant.

``inputs_section(protocol, device, url, rate)`` returns the TOML text (edge.inputs.settings' keys): every
feature's node or topic, the part id as the join key and the trigger (a prediction per new part), the quality
station's verdict as the label joined by part id, and where decisions are written back (OPC UA: the
``prediction.*`` nodes, the part id last; MQTT: ``plant/<device>/prediction``). The staleness limit is the
larger of 2 s and ten parts' time. Leaves out the rest of runner.toml (docs/edge-runner.md).
"""

from __future__ import annotations

import json

from edgeloop.plant.layout import KEY, QUALITY_KEY, QUALITY_VERDICT, node_id, topic
from edgeloop.plant.source import FEATURES

__all__ = ["inputs_section"]


def _q(text: str) -> str:
    return json.dumps(text)  # a TOML basic string (ids and topics are plain ASCII)


def inputs_section(protocol: str, device: str, url: str, rate: float) -> str:
    """See the module docstring; ``protocol`` is ``opcua`` or ``mqtt``."""
    stale = round(max(2.0, 10.0 / rate), 3)
    lines = [f"# {device} of `edgeloop plant serve --{protocol}`", "[inputs]", f"protocol = {_q(protocol)}",
             f"url = {_q(url)}", 'trigger = "change"', 'trigger_tag = "key"', f"stale_after_s = {stale}"]
    if protocol == "mqtt":  # a named client: the broker keeps its session (and queued verdicts) across a loss
        lines.append(f"username = {_q(device)}")
    lines.append("")
    if protocol == "opcua":
        for feature in FEATURES:
            lines += ["[[inputs.tags]]", f"feature = {_q(feature)}", f"source = {_q(node_id(device, feature))}", ""]
        lines += ["[inputs.key]", f"source = {_q(node_id(device, KEY))}", "",
                  "[inputs.labels]", f"source = {_q(node_id(device, QUALITY_VERDICT))}", 'join = "key"',
                  f"key_source = {_q(node_id(device, QUALITY_KEY))}", "",
                  "[inputs.output.nodes]"]
        lines += [f"{name} = {_q(node_id(device, 'prediction.' + field))}" for name, field in
                  (("label", "label"), ("probability", "probability"), ("model_version", "model_version"),
                   ("key", "part_id"))]
    elif protocol == "mqtt":
        part = topic(device, "part")
        for feature in FEATURES:
            lines += ["[[inputs.tags]]", f"feature = {_q(feature)}", f"source = {_q(part)}", f"field = {_q(feature)}",
                      ""]
        lines += ["[inputs.key]", f"source = {_q(part)}", f"field = {_q(KEY)}", "",
                  "[inputs.labels]", f"source = {_q(topic(device, 'quality'))}", 'field = "verdict"', 'join = "key"',
                  f"key_field = {_q(KEY)}", "",
                  "[inputs.output]", f"topic = {_q(topic(device, 'prediction'))}"]
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    return "\n".join(lines) + "\n"
