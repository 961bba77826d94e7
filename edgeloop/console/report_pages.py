"""Console routes: the reports served from the project (candidate overview, Evidently, GX Data Docs).

Leaves out: the page shell (edgeloop.console.layout) and authentication (edgeloop.console.auth).
"""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter()
