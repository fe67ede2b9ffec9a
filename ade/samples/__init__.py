"""Bundled examples: the member-roster config package and a messy-workbook generator."""

from pathlib import Path

__all__ = ["ROSTER_CONFIG"]

ROSTER_CONFIG = Path(__file__).resolve().parent / "roster_config"
"""The bundled member-roster config package (a folder)."""
