"""The API's plain decision objects, without sockets: idempotency decisions, display names,
download headers, zip checks, progress rendering."""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from ade.api.files import content_disposition
from ade.api.idempotency import (
    KEY_TTL_SECONDS,
    KeyLocks,
    Proceed,
    Replay,
    decide,
    fingerprint,
)
from ade.api.uploads import display_name
from ade.client.progress import ProgressView
from ade.configs.archive import check_zip
from ade.errors import IdempotencyKeyReused, PackageInvalid
from ade.models import StoredResponse

NOW = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


def _stored(request_hash: str, age_seconds: float = 0) -> StoredResponse:
    return StoredResponse(202, "{}", "/x", request_hash, NOW - timedelta(seconds=age_seconds))


def test_idempotency_decisions() -> None:
    first = fingerprint("POST", "/api/v1/workspaces/default/jobs", b'{"a":1}')
    assert first == fingerprint("post", "/api/v1/workspaces/default/jobs", b'{"a":1}')
    assert first != fingerprint("POST", "/api/v1/workspaces/other/jobs", b'{"a":1}')
    assert decide(None, first, "k", NOW) == Proceed()
    assert decide(_stored(first), first, "k", NOW) == Replay(_stored(first))
    with pytest.raises(IdempotencyKeyReused, match="'k' was already used"):
        decide(_stored("other"), first, "k", NOW)
    # An expired entry no longer binds the key, whatever its request was.
    assert decide(_stored("other", KEY_TTL_SECONDS + 1), first, "k", NOW) == Proceed()


async def test_key_locks_serialise_one_key_and_forget_it_after() -> None:
    locks = KeyLocks()
    order: list[str] = []

    async def use(name: str, key: str, hold: float) -> None:
        async with locks.hold("default", key):
            order.append(f"{name}+")
            await trio.sleep(hold)
            order.append(f"{name}-")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(use, "a", "k", 0.05)
        await trio.sleep(0.01)
        nursery.start_soon(use, "b", "k", 0)
        nursery.start_soon(use, "c", "other", 0)
    assert order.index("a-") < order.index("b+")
    assert order.index("c+") < order.index("a-")
    assert locks._locks == {}


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("members.xlsx", "members.xlsx"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\book.xlsx", "book.xlsx"),
        ("a\nb\x00.csv", "ab.csv"),
        ("..", "upload"),
        ("", "upload"),
        (None, "upload"),
        ("x" * 300, "x" * 255),
    ],
)
def test_display_name_is_data_not_a_path(raw: str | None, shown: str) -> None:
    assert display_name(raw) == shown


def test_content_disposition_has_an_ascii_fallback_and_the_exact_name() -> None:
    assert content_disposition('Bücher "2024".xlsx') == (
        'attachment; filename="B_cher _2024_.xlsx"; '
        "filename*=UTF-8''B%C3%BCcher%20%222024%22.xlsx"
    )


def test_check_zip_reports_every_problem(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", "{}")
        archive.writestr("a\\..\\b.py", "")
        archive.writestr("big.bin", b"\0" * (2 * 1024 * 1024))
    path = tmp_path / "p.zip"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(PackageInvalid) as invalid:
        check_zip(path, max_files=2, max_bytes=1024 * 1024)
    assert [(p.location, p.message.split(";")[0]) for p in invalid.value.problems] == [
        ("a\\..\\b.py", "unsafe path: absolute or escapes the folder"),
        ("big.bin", "compression ratio above 100:1 (a zip bomb?)"),
        ("package", "3 files"),
        ("package", f"{2 * 1024 * 1024 + 2} bytes when unpacked"),
    ]
    clean = tmp_path / "clean.zip"
    with zipfile.ZipFile(clean, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", "{}")
        archive.writestr("columns/a.py", "x = 1\n" * 1000)
    check_zip(clean, max_files=2, max_bytes=1024 * 1024)


def _event(seq: int, kind: str, **detail: object) -> dict:
    return {"seq": seq, "type": kind, "detail": detail}


def test_progress_plain_lines_and_bar() -> None:
    events = [
        _event(1, "enqueue", status="queued"),
        _event(2, "start", status="running"),
        _event(3, "pass_started", **{"pass": "detect"}),
        _event(4, "pass_finished", **{"pass": "detect", "rows": 5}),
        _event(5, "error", status="error", message="config code raised", diagnostics="Trace\n"),
    ]
    plain = ProgressView(terminal=False)
    assert [plain.render(e) for e in events] == [
        "  1 enqueue status=queued\n",
        "  2 start status=running\n",
        "  3 pass_started pass=detect\n",
        "  4 pass_finished pass=detect rows=5\n",
        "  5 error status=error message=config code raised\n",
    ]
    bar = ProgressView(terminal=True)
    frames = [bar.render(e) for e in events]
    assert frames[3].startswith("\r[####................] 1/5 running: detect")
    assert frames[-1].rstrip().endswith("1/5 error")
    assert frames[-1].endswith("\n")
    assert not frames[3].endswith("\n")


async def test_an_accepted_response_is_remembered_even_if_the_request_is_cancelled(
    tmp_path: Path,
) -> None:
    """The job exists once create() returns: a hang-up right then must not lose the key, or
    the client's retry with the same key would create a second job."""
    from quart_trio import QuartTrio
    from support.api import make_settings

    from ade.api.files import json_response
    from ade.api.idempotency import idempotent
    from ade.store import open_store

    settings = make_settings(tmp_path / "data")
    store = open_store(settings)
    path = "/api/v1/workspaces/default/jobs"
    async with QuartTrio("t").test_request_context(
        path, method="POST", headers={"Idempotency-Key": "k1"}
    ):
        with trio.CancelScope() as scope:

            async def create():  # type: ignore[no-untyped-def]
                scope.cancel()  # the client hangs up as the job is created
                return json_response({"id": "j1"}, 202, {"Location": f"{path}/j1"})

            await idempotent(store.idempotency_keys, KeyLocks(), "default", b"{}", create)
    remembered = await store.idempotency_keys.lookup("default", "k1")
    assert remembered is not None
    assert (remembered.status, remembered.body, remembered.location) == (
        202,
        '{"id":"j1"}',
        f"{path}/j1",
    )
    store.close()


async def test_an_interrupted_download_leaves_no_file(tmp_path: Path) -> None:
    import httpx

    from ade.client import AdeClient

    class _CutShort(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            yield b"PK\x03\x04 the first part"
            raise httpx.ReadError("connection lost")

    cut = True

    async def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Disposition": 'attachment; filename="m.normalized.xlsx"'}
        if cut:
            return httpx.Response(200, headers=headers, stream=_CutShort())
        return httpx.Response(200, headers=headers, content=b"PK\x03\x04 all of it")

    async with AdeClient("http://ade.test", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(httpx.ReadError):
            await client.download_output("j1", tmp_path)
        assert list(tmp_path.iterdir()) == []
        cut = False
        saved = await client.download_output("j1", tmp_path)
    assert saved == tmp_path / "m.normalized.xlsx"
    assert [p.name for p in tmp_path.iterdir()] == ["m.normalized.xlsx"]
    assert saved.read_bytes() == b"PK\x03\x04 all of it"
