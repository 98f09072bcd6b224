"""(being written: issue 5) — commands of this module are added to the CLI by register()."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the CLI."""
