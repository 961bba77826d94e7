"""Console routes: releases, channel pointers, rollout progress and the promote/roll back/halt actions.

Leaves out: the page shell (edgeloop.console.layout) and authentication (edgeloop.console.auth).
"""

from __future__ import annotations

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter()
