"""The settings a command runs with, or a one-line complaint naming the command."""

from __future__ import annotations

import sys
from typing import Any

from ade.settings import Settings, SettingsError, load_settings

__all__ = ["command_settings"]


def command_settings(command: str, **overrides: Any) -> Settings | None:
    """The settings from the environment (and ``overrides``), or None after printing
    ``<command>: <what is wrong>`` to stderr; the caller exits 2."""
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        print(f"{command}: {exc}", file=sys.stderr)
        return None
