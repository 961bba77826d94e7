"""The console's routes: one APIRouter made of each page module's router, mounted by edgeloop.console.mount.

Leaves out: rendering (the page modules) and authentication (edgeloop.console.auth).
"""

from __future__ import annotations

from fastapi import APIRouter

from edgeloop.console import device_pages, fleet_pages, login_pages, loop_pages, release_pages, report_pages

__all__ = ["router"]

router = APIRouter(tags=["console"], include_in_schema=False)
for _module in (login_pages, fleet_pages, device_pages, release_pages, loop_pages, report_pages):
    router.include_router(_module.router)
