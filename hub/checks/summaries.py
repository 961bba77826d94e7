"""A summary body is strict UTF-8 JSON whose top level is an object; nothing more is checked.

What a runner aggregates is its own business (counts, histograms, accuracy); the hub only makes sure
the cloud can parse what it stores. Leaves out the key and size checks (hub.checks.digest, .decoding).
"""

from __future__ import annotations

import json

from hub.checks.refusal import UNREADABLE, Refused

__all__ = ["check_summary"]


def check_summary(body: bytes) -> None:
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Refused(UNREADABLE, "the summary is not UTF-8 JSON") from None
    if not isinstance(document, dict):
        raise Refused(UNREADABLE, "the summary must be a JSON object")
