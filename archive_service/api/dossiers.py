"""(being written: issue 5) — routes of this module are added to the app by create_app."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
