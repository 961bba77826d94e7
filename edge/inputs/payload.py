"""Reading a plant message's value: parse the payload once, then follow a field path into it.

``parse(payload)``: ``bytes``/``str`` are JSON (``{"value": 301.2}``, a bare ``301.2``, ``"OK"``); text that
is not JSON is taken as the stripped text itself (a plain ``PASS`` verdict); any other object (an OPC UA
value) is returned as it is. ``pick(value, path)`` follows dot-path parts through mappings (by name) and
lists (by index). Both raise ``PayloadError`` with one line saying what is wrong.

Leaves out: what a value means (edge.inputs.assembler, edge.inputs.live). Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

__all__ = ["PayloadError", "parse", "pick"]


class PayloadError(ValueError):
    """A message that cannot be read as configured (not UTF-8, or the field path is not there)."""


def parse(payload: object) -> object:
    if isinstance(payload, bytes | bytearray | memoryview):
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError("payload is not UTF-8 text") from None
    if isinstance(payload, str):
        try:
            return json.loads(payload)
        except ValueError:
            return payload.strip()
    return payload


def pick(value: object, path: tuple[str, ...]) -> object:
    for i, part in enumerate(path):
        if isinstance(value, Mapping):
            if part not in value:
                raise PayloadError(f"field {'.'.join(path[:i + 1])!r} is not in the payload")
            value = value[part]
        elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
            if not part.isdigit() or int(part) >= len(value):
                raise PayloadError(f"field {'.'.join(path[:i + 1])!r}: no such index in a list of {len(value)}")
            value = value[int(part)]
        else:
            raise PayloadError(f"field {'.'.join(path[:i + 1])!r}: the payload has no fields there "
                               f"({type(value).__name__})")
    return value
