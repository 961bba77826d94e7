"""Console routes: the fleet list with filters.

Leaves out: the page shell (edgeloop.console.layout) and authentication (edgeloop.console.auth).
"""

from __future__ import annotations

from fastapi import Depends
from fastapi.responses import RedirectResponse, Response

from edgeloop.console.auth import Operator, console_router, operator
from edgeloop.console.layout import page

__all__ = ["router"]

router = console_router()


@router.get("/console/")
@router.get("/console")
def console_home() -> Response:
    return RedirectResponse("/console/fleet", status_code=303)


@router.get("/console/fleet")
def fleet_page(who: Operator = Depends(operator)) -> Response:  # noqa: B008
    return page("Fleet", "<h1>Fleet</h1>", who, "fleet")
