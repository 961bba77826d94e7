"""The console's routes: one APIRouter, mounted on the hub's app by edgeloop.console.mount.

Leaves out: rendering (the page modules) and authentication (edgeloop.console.auth).
"""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter(tags=["console"], include_in_schema=False)
