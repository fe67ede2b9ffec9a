"""Secure by default: the first ``ade serve`` creates an admin key, stores it for the local CLI
in ``${ADE_DATA_DIR}/admin.key`` (mode 0600: readable by the owner only) and prints it once;
client commands send ``ADE_API_KEY`` or, when that is unset, the key in that file."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from pathlib import Path

from ade.auth.keys import KEY_PREFIX, issue_key
from ade.auth.principal import Role
from ade.protocols import AccessStore
from ade.serde import utcnow
from ade.settings import Settings

__all__ = [
    "client_api_key",
    "disabled_auth_problem",
    "ensure_admin_key",
    "is_loopback",
    "write_key_file",
]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def disabled_auth_problem(settings: Settings) -> str | None:
    """Why ``ade serve`` must not start (ADE_AUTH=disabled on a non-loopback address), or None."""
    if settings.auth_enabled or is_loopback(settings.host):
        return None
    return (
        f"ADE_AUTH=disabled serves every route to anyone who can reach {settings.host}; it is "
        "allowed on a loopback address only (ADE_HOST=127.0.0.1). Unset ADE_AUTH to use API keys."
    )


def write_key_file(path: Path, token: str) -> None:
    """Write ``token`` to ``path`` readable by the owner only, replacing it atomically: the
    file is created 0600 (never briefly world-readable) and renamed into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # A scratch file left by a crashed run of this pid goes first. The file is then created
    # new (O_EXCL) and never through a link (O_NOFOLLOW): a link planted at this name would
    # otherwise receive the token wherever it points; now the open fails instead.
    with contextlib.suppress(FileNotFoundError):
        scratch.unlink()
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask said
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(scratch, path)


async def ensure_admin_key(access: AccessStore, settings: Settings) -> str | None:
    """Create the first admin key when no active one exists; returns its token (to print once)
    or None when keys exist already (or auth is disabled)."""
    if not settings.auth_enabled or await access.has_active_admin():
        return None
    issued = issue_key("admin (created by ade serve)", Role.ADMIN, (), now=utcnow())
    write_key_file(settings.admin_key_path, issued.token)
    await access.insert_key(issued.key)
    return issued.token


def client_api_key(settings: Settings) -> str | None:
    """The key client commands send: ADE_API_KEY, else the admin.key file if readable."""
    if settings.api_key:
        return settings.api_key
    try:
        token = settings.admin_key_path.read_text().strip()
    except OSError:
        return None
    return token if token.startswith(KEY_PREFIX) else None
