"""Datalake, analytics and report commands (`kdgat lake ...`, `leaderboard`, `kd-impact`, `compare`, `report`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `kdgat` app."""
