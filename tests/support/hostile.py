"""Helpers for the hostile-config suite: attack config packages, a world-traversable data
directory laid out like production, victims to attack, and what to look for afterwards.

An attack is the body of the package's ``on_job_start`` hook (hooks/attack.py): it runs in the
real worker, under the real sandbox, driven by the real runtime (``ade.runtime.open_runtime``).
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import attrs
import trio

from ade.configs.prepare import prepare_config
from ade.models import ConfigVersion
from support import insert_records
from support.configs import DATA_PY, HEADER_PY, column_py
from support.configs import manifest as manifest_for_tests
from support.jobs import store_document as stored_document
from support.jobs import write_workbook

T0 = datetime(2026, 1, 2, tzinfo=UTC)
# Planted in every victim file and in the server's environment: it must never show up in
# anything the attacking job leaves behind (events, record, outputs, diagnostics).
SECRET = "ade-victim-secret-4f1c9e"


def write_package(root: Path, attack: str | None, *, network: bool = False) -> Path:
    """A valid config package; with ``attack``, hooks/attack.py:on_job_start runs it."""
    manifest = manifest_for_tests("Hostile config")
    manifest["engine"] = {"runtime_network_access": network}
    files = {
        "row_types/header.py": HEADER_PY,
        "row_types/data.py": DATA_PY,
        "columns/name.py": column_py("Name"),
        "columns/amount.py": column_py("Amount"),
    }
    if attack is not None:
        manifest["hooks"] = {"on_job_start": ["hooks/attack.py"]}
        body = textwrap.indent(textwrap.dedent(attack).strip("\n"), "    ")
        files["hooks/attack.py"] = (
            "import ctypes, errno, os, signal, socket, subprocess, sys, threading, time\n\n\n"
            f"def on_job_start(*, inputs):\n{body}\n    return {{}}\n"
        )
    files["manifest.json"] = json.dumps(manifest, indent=2)
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def workbook_bytes(path: Path) -> bytes:
    return write_workbook(path, [["Name", "Amount"], ["Ada", 10], ["Grace", 20.5]])


async def publish(settings, package: Path, *, network: bool = False) -> str:
    build = await trio.to_thread.run_sync(prepare_config, package, settings.venvs_dir)
    config = ConfigVersion(build.config_id, "ws", "hostile", "1", build.content_hash, T0, network)
    await insert_records(settings, configs=[config])
    return build.config_id


async def store_document(settings, scratch: Path) -> str:
    doc = stored_document(settings, "ws", "input.xlsx", workbook_bytes(scratch))
    await insert_records(settings, documents=[doc])
    return doc.id


@attrs.frozen
class Victims:
    """Files of "another job" and of the service that an attack goes after."""

    other_input: Path
    other_output: Path
    documents_dir: Path
    db: Path

    def digest(self) -> dict[str, str]:
        found = {}
        # Not the database: the runtime itself writes it during the test (the attacks on it
        # are checked by their errors).
        for path in (self.other_input, self.other_output):
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(self.documents_dir.rglob("*")):
            if path.is_file():
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        return found


def make_victims(settings) -> Victims:
    other = settings.jobs_dir / "01VICTIMJOB0000000000000000"
    (other / "inputs").mkdir(parents=True)
    other_input = other / "inputs" / "001-victim.csv"
    other_input.write_text(f"name,amount\n{SECRET},1\n")
    other_input.chmod(0o444)
    other_output = other / "normalized.xlsx"
    other_output.write_text(f"victim output {SECRET}")
    secret_doc = settings.documents_dir / "other-ws" / "01SECRETDOC"
    secret_doc.parent.mkdir(parents=True)
    secret_doc.write_text(SECRET)
    return Victims(other_input, other_output, settings.documents_dir, settings.db_path)


def job_processes(job_dir: Path) -> list[int]:
    """Live processes of a job: working in its directory or naming it on their command line
    (works across PID namespaces: /proc here shows host pids)."""
    root = os.path.realpath(job_dir)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if root.encode() in cmdline or cwd == root or cwd.startswith(root + "/"):
            found.append(int(entry))
    return found


def leaked_secret(job_dir: Path, *texts: str) -> list[str]:
    """Where SECRET shows up in what the attacking job left behind."""
    where = []
    for path in sorted(job_dir.rglob("*")):
        if path.is_file() and not path.is_symlink() and "inputs" not in path.parts:
            if SECRET.encode() in path.read_bytes():
                where.append(str(path))
    where += [f"text {i}" for i, text in enumerate(texts) if SECRET in text]
    return where
