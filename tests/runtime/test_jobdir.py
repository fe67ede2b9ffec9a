"""create_job_dir: exact layout, filenames as data, atomic (nothing left on failure)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import attrs
import pytest
from support.jobs import T0, store_document, write_package

from ade.configs.prepare import prepare_config
from ade.errors import Conflict, NotFound
from ade.ids import new_id
from ade.models import Document, JobRecord, JobStatus
from ade.runtime.jobdir import create_job_dir
from ade.settings import Settings, load_settings
from ade.worker.protocol import load_request


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({}, data_dir=tmp_path / "data", worker_cpu_seconds=7, worker_mem_mb=300)


@pytest.fixture
def config_id(settings: Settings, tmp_path: Path) -> str:
    return prepare_config(write_package(tmp_path / "pkg"), settings.venvs_dir).config_id


def make_job(config_id: str, documents: list[Document], **changes: object) -> JobRecord:
    job = JobRecord(
        id=new_id(),
        workspace_id="ws",
        status=JobStatus.QUEUED,
        config_version_id=config_id,
        document_ids=tuple(d.id for d in documents),
        runtime_network_access=False,
        attempt=1,
        created_at=T0,
    )
    return attrs.evolve(job, **changes)


def test_layout_is_exactly_as_promised(settings: Settings, config_id: str) -> None:
    hostile = store_document(settings, "ws", "../../etc/passwd.XLSX", b"first")
    plain = store_document(settings, "ws", "sub/dir/report.csv", b"second")
    odd = store_document(settings, "ws", "no extension", b"third")
    job = make_job(config_id, [hostile, plain, odd, plain], runtime_network_access=True)

    job_dir, built = create_job_dir(settings, job, [odd, plain, hostile])

    assert job_dir == settings.jobs_dir / job.id
    assert sorted(os.listdir(job_dir)) == [".venv", "inputs", "run-request.json"]
    assert os.readlink(job_dir / ".venv") == f"../../venvs/{config_id}/"
    assert (job_dir / ".venv" / "ade-build" / "snapshot" / "manifest.json").is_file()
    names = sorted(os.listdir(job_dir / "inputs"))
    assert names == [
        f"001-{hostile.id}.xlsx",
        f"002-{plain.id}.csv",
        f"003-{odd.id}",
        f"004-{plain.id}.csv",
    ]
    assert (job_dir / "inputs" / names[0]).read_bytes() == b"first"
    # Hard-linked from the document store, and read-only for the job.
    stored = settings.documents_dir / "ws" / hostile.id
    assert os.stat(job_dir / "inputs" / names[0]).st_ino == os.stat(stored).st_ino
    assert os.stat(job_dir / "inputs" / names[0]).st_mode & 0o777 == 0o444
    assert not (settings.data_dir / "etc").exists()

    request = load_request(job_dir / "run-request.json")
    # Written once: what the file says is exactly what admission hands the supervisor.
    assert request == built
    assert request.job_id == job.id
    assert request.config_id == config_id
    assert request.runtime_network_access is True
    assert [(i.path, i.name, i.document_id) for i in request.inputs] == [
        (f"inputs/{names[0]}", "../../etc/passwd.XLSX", hostile.id),
        (f"inputs/{names[1]}", "sub/dir/report.csv", plain.id),
        (f"inputs/{names[2]}", "no extension", odd.id),
        (f"inputs/{names[3]}", "sub/dir/report.csv", plain.id),
    ]
    assert request.snapshot == ".venv/ade-build/snapshot"
    assert request.site_packages is None
    spec = request.sandbox
    assert (spec.cpu_seconds, spec.mem_mb, spec.network) == (7, 300, True)
    assert spec.job_dir == str(job_dir.resolve())
    raw = json.loads((job_dir / "run-request.json").read_text())
    assert raw["format"] == 1
    # Nothing else appeared in jobs/.
    assert os.listdir(settings.jobs_dir) == [job.id]


def test_missing_document_content_leaves_nothing(settings: Settings, config_id: str) -> None:
    present = store_document(settings, "ws", "a.xlsx", b"a")
    lost = store_document(settings, "ws", "b.xlsx", b"b")
    (settings.documents_dir / "ws" / lost.id).unlink()
    job = make_job(config_id, [present, lost])
    with pytest.raises(NotFound, match=f"stored content of document {lost.id} is missing"):
        create_job_dir(settings, job, [present, lost])
    assert os.listdir(settings.jobs_dir) == []


def test_refusals_name_the_problem(settings: Settings, config_id: str) -> None:
    doc = store_document(settings, "ws", "a.xlsx", b"a")
    foreign = store_document(settings, "other", "b.xlsx", b"b")
    with pytest.raises(NotFound, match=f"document {foreign.id} is not in workspace ws"):
        create_job_dir(settings, make_job(config_id, [foreign]), [foreign])
    with pytest.raises(NotFound, match="config version nope has not been prepared"):
        create_job_dir(settings, make_job("nope", [doc]), [doc])
    with pytest.raises(NotFound, match="has not been prepared"):
        create_job_dir(settings, make_job("../../etc", [doc]), [doc])
    job = make_job(config_id, [doc])
    create_job_dir(settings, job, [doc])
    with pytest.raises(Conflict, match="already exists"):
        create_job_dir(settings, job, [doc])
    assert os.listdir(settings.jobs_dir) == [job.id]


def test_copy_failure_midway_removes_the_partial_directory(
    settings: Settings, config_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = [store_document(settings, "ws", f"{i}.xlsx", b"x") for i in range(3)]
    calls = []

    def failing_link(src: object, dst: object) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        os.symlink(src, dst)  # type: ignore[arg-type]

    def failing_copy(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("ade.runtime.jobdir.os.link", failing_link)
    monkeypatch.setattr("ade.runtime.jobdir.shutil.copyfile", failing_copy)
    with pytest.raises(OSError, match="No space left"):
        create_job_dir(settings, make_job(config_id, docs), docs)
    assert os.listdir(settings.jobs_dir) == []
    # The stored documents are untouched.
    assert all((settings.documents_dir / "ws" / d.id).read_bytes() == b"x" for d in docs)


def test_copy_is_used_when_hard_links_fail(
    settings: Settings, config_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = store_document(settings, "ws", "a.xlsx", b"content")

    def no_links(src: object, dst: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr("ade.runtime.jobdir.os.link", no_links)
    job_dir, _ = create_job_dir(settings, make_job(config_id, [doc]), [doc])
    copied = job_dir / "inputs" / f"001-{doc.id}.xlsx"
    assert copied.read_bytes() == b"content"
    assert os.stat(copied).st_ino != os.stat(settings.documents_dir / "ws" / doc.id).st_ino
    assert copied.stat().st_mode & 0o777 == 0o444
