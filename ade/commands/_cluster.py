"""Settings for the commands that only make sense in a cluster (``ade worker``, ``ade nodes``)."""

from __future__ import annotations

import sys

from ade.commands._settings import command_settings
from ade.settings import Settings

__all__ = ["cluster_settings"]


def cluster_settings(command: str, without_cluster: str) -> Settings | None:
    """The settings, or None after printing why ``command`` cannot run: a bad variable, or
    ``ADE_DATABASE_URL`` unset (``without_cluster`` says what to do instead)."""
    settings = command_settings(command)
    if settings is None:
        return None
    if settings.database_url is None:
        print(f"{command}: ADE_DATABASE_URL is not set; {without_cluster}", file=sys.stderr)
        return None
    return settings
