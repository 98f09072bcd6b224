"""Dossier events, versioned retention référentiels and rule updates of archive units."""

from __future__ import annotations

from sqlalchemy.orm import Session


class SqlLifecycleRepository:
    def __init__(self, session: Session) -> None:
        self._s = session
