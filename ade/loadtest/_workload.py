"""What the clients upload: workbooks of two sizes and one config package per behaviour.

The config packages are the bundled sample package (``ade/samples``), unchanged for ``ok`` and
with one ``on_job_start`` hook added for the others, so every package is valid and prepares
like a customer's would; only running it goes wrong:

- ``fail``: the hook raises (a config code error the user must see named by file and function);
- ``timeout``: the hook sleeps far past ``ADE_JOB_TIMEOUT_SECONDS`` (the wall-clock kill);
- ``memory``: the hook touches memory past ``ADE_WORKER_MEM_MB`` (the memory limit).

Workbooks carry the sample's field labels as headers and synthetic values only.
"""

from __future__ import annotations

import io
import json
import random
import zipfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import attrs
import openpyxl

from ade.loadtest._options import CONFIG_KINDS, LoadTestOptions

__all__ = ["HOOK_SOURCES", "Workload", "build_workload", "config_package_files", "sample_package"]

HOOK_FILE = "hooks/loadtest_behaviour.py"

# Why these bodies: each fails in exactly one way. The sleep is a loop of short sleeps so that
# a supervisor's SIGTERM would interrupt it promptly; only the wall-clock limit may end it. The
# memory hog writes every page (untouched pages would not count against a cgroup limit) in
# 16 MiB chunks up to 8 GiB, far past any limit the harness configures.
HOOK_SOURCES: dict[str, str] = {
    "fail": (
        "def on_job_start(inputs, manifest):\n"
        "    raise RuntimeError('loadtest: this config fails on purpose')\n"
    ),
    "timeout": (
        "import time\n\n\n"
        "def on_job_start(inputs, manifest):\n"
        "    deadline = time.monotonic() + 3600\n"
        "    while time.monotonic() < deadline:\n"
        "        time.sleep(0.05)\n"
    ),
    "memory": (
        "def on_job_start(inputs, manifest):\n"
        "    hoard = []\n"
        "    for _ in range(512):\n"
        "        hoard.append(b'\\x01' * (16 * 1024 * 1024))\n"
        "    return len(hoard)\n"
    ),
}


def sample_package() -> Path:
    """The bundled sample config package folder (the one holding manifest.json)."""
    import ade.samples  # the ENGINE's bundled sample; imported late so `ade --help` never needs it

    root = Path(ade.samples.__file__).parent
    manifests = sorted(root.rglob("manifest.json"))
    if not manifests:
        raise FileNotFoundError(f"no config package (manifest.json) under {root}")
    return manifests[0].parent


def _package_files(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    }


def config_package_files(kind: str, base: dict[str, bytes]) -> dict[str, bytes]:
    """The files of the ``kind`` package: ``base`` plus the misbehaving hook, if any."""
    if kind not in CONFIG_KINDS:
        raise ValueError(f"unknown config kind {kind!r}")
    files = dict(base)
    manifest = json.loads(files["manifest.json"])
    manifest["title"] = f"{manifest.get('title', 'config')} (loadtest {kind})"
    if kind != "ok":
        hooks = manifest.setdefault("hooks", {})
        entries = hooks.get("on_job_start", [])
        entries = [entries] if isinstance(entries, str) else list(entries)
        hooks["on_job_start"] = [f"{HOOK_FILE}:on_job_start", *entries]
        files[HOOK_FILE] = HOOK_SOURCES[kind].encode()
    files["manifest.json"] = json.dumps(manifest, indent=2).encode()
    return files


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in sorted(files.items()):
            archive.writestr(name, data)
    return buffer.getvalue()


_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken")


def _value(field: dict[str, Any], row: int, rng: random.Random) -> Any:
    """A plausible synthetic value for ``field`` (by type, then by name): the engine should
    map and validate these like real data, so ``ok`` jobs succeed with few issues."""
    name, field_type = field["name"], field.get("type")
    if field_type in ("date", "datetime"):
        return date(1960, 1, 1) + timedelta(days=(row * 37 + rng.randrange(365)) % 20000)
    if field_type == "integer":
        return rng.randrange(1, 10_000)
    if field_type == "number":
        return round(rng.uniform(1, 10_000), 2)
    if field_type == "boolean":
        return row % 2 == 0
    if "email" in name:
        return f"member{row}@example.com"
    if "phone" in name:
        return f"(555) {row % 1000:03d}-{row % 10_000:04d}"
    if name.endswith("_id") or name == "id":
        return f"M{row:06d}"
    if "name" in name:
        return rng.choice(_NAMES)
    return f"value {row}"


def workbook_bytes(fields: list[dict[str, Any]], rows: int, seed: int) -> bytes:
    """A workbook with a title row, a header row of the fields' labels and ``rows`` rows."""
    rng = random.Random(seed)
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Data"
    sheet.append(["Load test export"])
    sheet.append([field["label"] for field in fields])
    for row in range(1, rows + 1):
        sheet.append([_value(field, row, rng) for field in fields])
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


@attrs.frozen
class Workload:
    workbooks: dict[str, bytes]
    config_zips: dict[str, bytes]


def build_workload(options: LoadTestOptions, scratch: Path) -> Workload:
    """Generate every workbook and config package of a run (in memory; ``scratch`` is kept
    for a copy of each on disk, which helps when a run needs a post-mortem)."""
    base = _package_files(sample_package())
    manifest = json.loads(base["manifest.json"])
    columns = manifest["columns"]
    fields = [
        {
            "name": name,
            "label": columns["fields"][name]["label"],
            "type": columns["fields"][name].get("type"),
        }
        for name in columns["order"]
    ]
    workbooks = {
        "tiny": workbook_bytes(fields, options.tiny_rows, seed=1),
        "large": workbook_bytes(fields, options.large_rows, seed=2),
    }
    configs = {kind: _zip(config_package_files(kind, base)) for kind in CONFIG_KINDS}
    scratch.mkdir(parents=True, exist_ok=True)
    for kind, data in workbooks.items():
        (scratch / f"{kind}.xlsx").write_bytes(data)
    for kind, data in configs.items():
        (scratch / f"config-{kind}.zip").write_bytes(data)
    return Workload(workbooks=workbooks, config_zips=configs)
