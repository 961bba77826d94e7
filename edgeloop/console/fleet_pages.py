"""Console routes: the fleet list with filters.

Leaves out: the page shell (edgeloop.console.layout) and authentication (edgeloop.console.auth).
"""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter()
