"""Switches off every library's phoning home, by environment, before those libraries are imported.

Call ``switch_off()`` first thing in every entry point (CLI, ``python -m flows``, edge runner, tests).
onnxruntime reads its switch only at import time, so calling this after importing it is too late.
Leaves a value the user set explicitly alone.
"""

from __future__ import annotations

import os

SWITCHES: dict[str, str] = {
    "ORT_DISABLE_TELEMETRY": "1",  # onnxruntime: device id file + events host
    "DO_NOT_TRACK": "1",  # prefect SDK, evidently
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # prefect server heartbeat
    "DVC_NO_ANALYTICS": "1",  # dvc analytics daemon
    "DVC_NO_UPDATER": "1",  # dvc "new version available" check
    "GX_ANALYTICS_ENABLED": "false",  # great expectations (none observed; belt and braces)
}


def switch_off() -> None:
    """Set each telemetry switch unless the environment already names a value for it."""
    for name, value in SWITCHES.items():
        os.environ.setdefault(name, value)
