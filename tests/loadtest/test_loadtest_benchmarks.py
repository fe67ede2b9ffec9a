"""The benchmark scripts in their quick modes: they run end to end against real servers and
produce every figure (timings are not asserted: benchmarks measure, tests prove behaviour)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / "result.json"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    result = json.loads(out.read_text())
    # Every printed figure carries the machine's core count and the date.
    assert f"on {os.cpu_count()} cores" in completed.stdout
    assert result["machine"]["date"] in completed.stdout
    return result


def test_api_benchmark_quick_mode(tmp_path: Path) -> None:
    result = _run("api.py", "--duration", "2", "--clients", "20", tmp_path=tmp_path)
    for name in ("ade", "bare"):
        side = result[name]
        assert side["transport_errors"] == 0, side
        assert side["submit_codes"].get("202", 0) > 0, side
        # ADE may refuse with 429 (queue of 10); nothing else is an acceptable answer.
        assert set(side["submit_codes"]) <= {"202", "429"}, side
        assert set(side["status_codes"]) == {"200"}, side
        assert side["submit_p99_ms"] >= side["submit_p50_ms"] > 0
    assert set(result["bare"]["submit_codes"]) == {"202"}
    assert set(result["ratios"]) == {"submit_p50", "submit_p99", "status_rps"}
    assert all(value > 0 for value in result["ratios"].values())


def test_api_benchmark_open_loop_sends_at_the_rate(tmp_path: Path) -> None:
    """``--rate``: the clients together send that many requests per second, no more (a closed
    loop would send hundreds in the same time), and each latency is counted from when its
    request was due."""
    result = _run("api.py", "--duration", "2", "--clients", "10", "--rate", "20", tmp_path=tmp_path)
    assert result["rate"] == 20
    for name in ("ade", "bare"):
        side = result[name]
        sent = side["submit_count"] + sum(side["status_codes"].values())
        # 20/s for 2 s per server; a request in flight at a slice's end is not counted.
        assert 30 <= sent <= 40, side
        assert side["status_p99_ms"] >= side["status_p50_ms"] > 0


def test_history_benchmark_quick_mode(tmp_path: Path) -> None:
    result = _run(
        "history.py", "--finished", "300", "--queued", "30", "--submits", "10", "--reads", "20",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result["full"]["finished_jobs"] == 300
    assert result["restart_queued"]["queued_jobs"] == 30
    for phase in ("empty", "full"):
        assert result[phase]["submit_ms"]["count"] == 10
        assert result[phase]["status_ms"]["count"] == 20
        assert result[phase]["list_ms"]["count"] == 4
    assert result["restart_empty"]["ready_seconds"] > 0
    assert set(result["ratios"]) == {
        "submit_p50", "submit_p99", "status_p50", "status_p99", "list_p50", "restart",
    }  # fmt: skip


def test_auth_benchmark_quick_mode(tmp_path: Path) -> None:
    result = _run(
        "auth.py", "--seconds", "1", "--rounds", "2", "--clients", "10", tmp_path=tmp_path
    )
    # Both servers answered every read with 200 (the script refuses anything else): the keys-on
    # server was read with its admin key, the other without a key.
    assert [len(result["requests_per_second"][mode]) for mode in ("on", "off")] == [2, 2]
    assert all(rate > 0 for rates in result["requests_per_second"].values() for rate in rates)
    assert result["cost"] == 1 - result["paired_ratio"]


def test_api_profile_summary_counts_busy_samples_only(tmp_path: Path) -> None:
    """``benchmarks/api.py --profile``: folded py-spy stacks in, busiest functions out; idle
    thread-cache workers and epoll waits are not work."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("api_bench", ROOT / "benchmarks" / "api.py")
    assert spec is not None and spec.loader is not None
    api = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(api)
    raw = tmp_path / "profile.raw"
    raw.write_text(
        "thread (1): main;run (trio/_core/_run.py:1);get_job (ade/api/jobs.py:9) 30\n"
        "thread (1): main;run (trio/_core/_run.py:1);submit_job (ade/api/jobs.py:40) 10\n"
        "thread (2): Thread.run (threading.py:982);WorkerThread._work "
        "(trio/_core/_thread_cache.py:211) 500\n"
        "thread (1): main;run (trio/_core/_run.py:1);EpollIOManager._epoll_wait (x.py:2) 70\n"
    )
    summary = api.profile_summary(raw)
    lines = summary.splitlines()
    assert lines[0] == "40 busy samples"
    assert "WorkerThread._work" not in summary and "epoll" not in summary
    own = lines[lines.index("-- self") + 1 : lines.index("-- inclusive")]
    assert own == [
        " 75.0%  get_job (ade/api/jobs.py:9)",
        " 25.0%  submit_job (ade/api/jobs.py:40)",
    ]
    inclusive = lines[lines.index("-- inclusive") + 1 :]
    # (the first segment of a stack is py-spy's thread label, counted as "thread")
    assert set(inclusive[:2]) == {"100.0%  thread", "100.0%  run"}
    assert inclusive[2:] == [" 75.0%  get_job", " 25.0%  submit_job"]
