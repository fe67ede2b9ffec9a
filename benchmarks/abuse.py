"""Abuse benchmark: normal clients' latency with and without one attacker, in the same run.

    .venv/bin/python benchmarks/abuse.py                  # 20 clients, 15 s per phase
    .venv/bin/python benchmarks/abuse.py --duration 5     # quick mode

One ``ade serve`` (a real subprocess, the bundled sample submitted once). Normal clients loop
``GET .../jobs/{id}`` (the status route) for ``--duration`` seconds twice: first alone, then
while one attacker sends, all at once,

(a) the largest JSON body of ids ``ADE_MAX_JSON_KB`` allows, ``POST .../jobs`` once a second
    (``--big-body-interval 0``: back to back, a flood);
(b) 1,000 connections that are opened and then sit idle (no request: a thousand requests would
    measure request throughput, not idleness; hypercorn runs the same idle timer before the
    first request as between requests, and tests/api/test_bounded_requests.py shows the close
    after a request);
(c) 200 uploads that trickle 50 bytes a second.

Reported: the normal clients' p50/p99 per phase and their ratio (target: p99 <= 2x, no error),
the attacker's answers, and when the server closed each attacker socket measured against its
timeout (idle: ``ADE_KEEP_ALIVE_SECONDS`` after opening; trickle: ``ADE_BODY_TIMEOUT_SECONDS``
after the headers). The timeouts are set short here (5 s / 10 s) so that a phase sees them
expire; they are knobs, the mechanism is the same at their defaults.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from ade.loadtest import ServerProcess, machine_facts

PREFIX = "/api/v1/workspaces/default"
KEEP_ALIVE_SECONDS = 5.0
BODY_TIMEOUT_SECONDS = 10.0
MAX_JSON_KB = 256
# A socket counts as closed "within its timeout" if the server closed it before the timeout
# plus this margin (timer granularity, a loaded 2-core machine).
CLOSE_MARGIN_SECONDS = 2.0
ATTACKS = "abc"
# (a) is "the largest allowed JSON body": one such body every BIG_BODY_INTERVAL seconds shows
# what a single maximal request costs everyone else; 0 sends them back to back (a flood, whose
# cure is a rate limit in front, see docs/operations.md; reported as a diagnosis).
BIG_BODY_INTERVAL = 1.0


@attrs.define
class Latencies:
    seconds: list[float] = attrs.field(factory=list)
    errors: list[str] = attrs.field(factory=list)

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.seconds)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else None
        return {
            "requests": len(ordered),
            "errors": len(self.errors),
            "first_errors": self.errors[:5],
            "p50_ms": round(statistics.median(ordered) * 1000, 2) if ordered else None,
            "p99_ms": round(p99 * 1000, 2) if p99 is not None else None,
        }


async def normal_load(url: str, job_path: str, clients: int, duration: float) -> Latencies:
    result = Latencies()
    deadline = time.monotonic() + duration

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    response = await http.get(job_path)
                except httpx.HTTPError as exc:
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                result.seconds.append(time.monotonic() - started)
                if response.status_code != 200:
                    result.errors.append(f"HTTP {response.status_code}")

    async with trio.open_nursery() as nursery:
        for _ in range(clients):
            nursery.start_soon(client)
    return result


@attrs.define
class Attack:
    big_body_answers: dict[str, int] = attrs.field(factory=dict)
    big_body_seconds: list[float] = attrs.field(factory=list)
    # Seconds from the moment the timer starts (answer / headers) to the server's close.
    idle_closed_after: list[float] = attrs.field(factory=list)
    idle_not_closed: int = 0
    trickle_closed_after: list[float] = attrs.field(factory=list)
    trickle_answers: dict[str, int] = attrs.field(factory=dict)
    trickle_not_closed: int = 0
    connect_errors: int = 0


_TRICKLE_HEAD = (
    f"POST {PREFIX}/documents HTTP/1.1\r\nHost: abuse\r\n"
    "Content-Type: multipart/form-data; boundary=abuse\r\n"
    "Content-Length: 10000000\r\n\r\n"
    "--abuse\r\n"
    'Content-Disposition: form-data; name="file"; filename="t.csv"\r\n\r\n'
).encode()


def _big_body() -> bytes:
    """As many ids as fit in ADE_MAX_JSON_KB."""
    cap = MAX_JSON_KB * 1024
    # Each id is 14 digits, quoted, with ", " between: 18 bytes; 80 bytes for the rest.
    ids = [f"{n:014d}" for n in range((cap - 80) // 18)]
    body = json.dumps({"config_version_id": "c" * 26, "document_ids": ids}).encode()
    assert len(body) <= cap, len(body)
    return body


async def _read_until_closed(stream: trio.SocketStream, limit: float) -> tuple[bytes, bool]:
    data = bytearray()
    with trio.move_on_after(limit):
        try:
            while chunk := await stream.receive_some(65536):
                data.extend(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        return bytes(data), True
    return bytes(data), False


async def attacker(host: str, port: int, duration: float) -> Attack:
    attack = Attack()
    body = _big_body()
    deadline = time.monotonic() + duration

    async def big_bodies() -> None:
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30) as http:
            while time.monotonic() < deadline:
                started = time.monotonic()
                response = await http.post(
                    f"{PREFIX}/jobs", content=body, headers={"Content-Type": "application/json"}
                )
                attack.big_body_seconds.append(time.monotonic() - started)
                key = str(response.status_code)
                attack.big_body_answers[key] = attack.big_body_answers.get(key, 0) + 1
                await trio.sleep(max(0.0, BIG_BODY_INTERVAL - (time.monotonic() - started)))

    async def idle_connection() -> None:
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            attack.connect_errors += 1
            return
        async with stream:
            opened = time.monotonic()
            _, closed = await _read_until_closed(
                stream, KEEP_ALIVE_SECONDS + CLOSE_MARGIN_SECONDS + 5
            )
            if closed:
                attack.idle_closed_after.append(time.monotonic() - opened)
            else:
                attack.idle_not_closed += 1

    async def trickle() -> None:
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            attack.connect_errors += 1
            return
        async with stream:
            await stream.send_all(_TRICKLE_HEAD)
            sent_headers = time.monotonic()
            response = b""
            closed = False
            async with trio.open_nursery() as nursery:

                async def drip() -> None:
                    try:
                        while True:
                            await trio.sleep(1)
                            await stream.send_all(b"x" * 50)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return

                nursery.start_soon(drip)
                response, closed = await _read_until_closed(
                    stream, BODY_TIMEOUT_SECONDS + CLOSE_MARGIN_SECONDS + 5
                )
                nursery.cancel_scope.cancel()
            if closed:
                attack.trickle_closed_after.append(time.monotonic() - sent_headers)
            else:
                attack.trickle_not_closed += 1
            status = response.split(b" ", 2)[1].decode() if response.count(b" ") >= 2 else "none"
            attack.trickle_answers[status] = attack.trickle_answers.get(status, 0) + 1

    async with trio.open_nursery() as nursery:
        if "a" in ATTACKS:
            nursery.start_soon(big_bodies)
        if "b" in ATTACKS:
            for _ in range(1000):
                nursery.start_soon(idle_connection)
        if "c" in ATTACKS:
            for _ in range(200):
                nursery.start_soon(trickle)
    return attack


def _closed_summary(after: list[float], not_closed: int, timeout: float) -> dict[str, Any]:
    return {
        "sockets": len(after) + not_closed,
        "closed": len(after),
        "not_closed": not_closed,
        "median_s": round(statistics.median(after), 2) if after else None,
        "max_s": round(max(after), 2) if after else None,
        "timeout_s": timeout,
        "all_within_timeout": not_closed == 0
        and all(a <= timeout + CLOSE_MARGIN_SECONDS for a in after),
    }


async def run(clients: int, duration: float, scratch: Path) -> dict[str, Any]:
    env = {
        "ADE_KEEP_ALIVE_SECONDS": str(KEEP_ALIVE_SECONDS),
        "ADE_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT_SECONDS),
        "ADE_MAX_JSON_KB": str(MAX_JSON_KB),
    }
    server = ServerProcess(scratch / "data", scratch / "logs", env)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            configs = (await http.get(f"{PREFIX}/configs")).json()["items"]
            documents = (await http.get(f"{PREFIX}/documents")).json()["items"]
            submitted = await http.post(
                f"{PREFIX}/jobs",
                json={"config_version_id": configs[0]["id"], "document_ids": [documents[0]["id"]]},
            )
            job_path = f"{PREFIX}/jobs/{submitted.json()['id']}"
        await trio.sleep(2)  # the sample job runs and finishes: the status route is steady
        alone = await normal_load(server.url, job_path, clients, duration)
        # The attacker is its own process: its thousand sockets must not slow the normal
        # clients' event loop, only the server's.
        async with trio.open_nursery() as nursery:
            attacker_run: list[Any] = []

            async def attack_process() -> None:
                attacker_run.append(
                    await trio.run_process(
                        [sys.executable, __file__, "--attacker", str(server.port),
                         "--duration", str(duration), "--attacks", ATTACKS,
                         "--big-body-interval", str(BIG_BODY_INTERVAL)],
                        capture_stdout=True,
                    )
                )  # fmt: skip

            nursery.start_soon(attack_process)
            await trio.sleep(1.0)  # the attacker's sockets are open first
            attacked = await normal_load(server.url, job_path, clients, duration)
        attack = json.loads(attacker_run[0].stdout)
    finally:
        await server.stop()
    base, hit = alone.summary(), attacked.summary()
    ratio = hit["p99_ms"] / base["p99_ms"] if base["p99_ms"] and hit["p99_ms"] else None
    return {
        "machine": machine_facts(),
        "clients": clients,
        "duration_s": duration,
        "big_body_interval_s": BIG_BODY_INTERVAL,
        "normal_alone": base,
        "normal_attacked": hit,
        "p99_ratio": round(ratio, 2) if ratio else None,
        "attack": attack,
    }


def attack_report(attack: Attack) -> dict[str, Any]:
    return {
        "big_json_body_bytes": len(_big_body()),
        "big_json_answers": attack.big_body_answers,
        "big_json_median_ms": round(statistics.median(attack.big_body_seconds) * 1000, 1)
        if attack.big_body_seconds
        else None,
        "idle_connections": _closed_summary(
            attack.idle_closed_after, attack.idle_not_closed, KEEP_ALIVE_SECONDS
        ),
        "trickling_uploads": {
            **_closed_summary(
                attack.trickle_closed_after, attack.trickle_not_closed, BODY_TIMEOUT_SECONDS
            ),
            "answers": attack.trickle_answers,
        },
        "connect_errors": attack.connect_errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument(
        "--attacks", default="abc", help="which of (a), (b), (c) to send (diagnosis); default all"
    )
    parser.add_argument(
        "--big-body-interval",
        type=float,
        default=1.0,
        help="seconds between (a)'s largest bodies; 0 = back to back (a flood); default 1",
    )
    parser.add_argument("--attacker", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global ATTACKS, BIG_BODY_INTERVAL
    ATTACKS = args.attacks
    BIG_BODY_INTERVAL = args.big_body_interval
    if args.attacker:  # the attacker process run() starts
        attack = trio.run(attacker, "127.0.0.1", args.attacker, args.duration)
        print(json.dumps(attack_report(attack)))
        return 0
    with tempfile.TemporaryDirectory(prefix="ade-abuse-") as scratch:
        report = trio.run(run, args.clients, args.duration, Path(scratch))
    print(json.dumps(report, indent=2))
    ok = (
        report["p99_ratio"] is not None
        and report["p99_ratio"] <= 2.0
        and report["normal_attacked"]["errors"] == 0
        and report["attack"]["idle_connections"]["all_within_timeout"]
        and report["attack"]["trickling_uploads"]["all_within_timeout"]
    )
    print("RESULT:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
