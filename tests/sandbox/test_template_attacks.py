"""Attacks that only make sense with a fork template (ADE_WORKER_START=fork): a job going after
its template, the other worker's template or a sibling job (signal, ptrace, /proc/<pid>/mem,
the template's control socket), and a job leaving a descriptor or a thread behind for the next
job of the same template. Run through the real runtime and sandbox, as tests/sandbox's suite.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import trio
from support.hostile import publish, store_document, write_package
from support.sandbox import require

from ade.models import JobStatus
from ade.runtime import open_runtime
from ade.runtime.leftovers import processes_in
from ade.runtime.starters import ForkServer
from ade.settings import load_settings

# Every attempt must fail; one that works raises, and the job's error names it.
GO_AFTER = """
targets = [@TARGETS@]
reached = []
libc = ctypes.CDLL(None, use_errno=True)
for pid in targets:
    try:
        os.kill(pid, signal.SIGKILL)
        reached.append(f"signalled {pid}")
    except OSError:
        pass
    if libc.ptrace(16, pid, None, None) == 0:
        reached.append(f"ptraced {pid}")
    try:
        with open(f"/proc/{pid}/mem", "rb") as mem:
            mem.read(1)
        reached.append(f"read the memory of {pid}")
    except OSError:
        pass
    for fd in range(16):  # the template's control socket is one of its first descriptors
        try:
            os.open(f"/proc/{pid}/fd/{fd}", os.O_RDWR)
            reached.append(f"opened fd {fd} of {pid}")
        except OSError:
            pass
import stat
for name in os.listdir("/proc/self/fd"):
    try:
        if stat.S_ISSOCK(os.fstat(int(name)).st_mode):
            reached.append(f"holds a socket (fd {name})")
    except OSError:
        pass
if reached:
    raise RuntimeError("; ".join(reached))
"""

# Leaves a descriptor and a daemon thread behind: the process must end with the job.
LEAVE_BEHIND = """
global _kept
_kept = open("tmp/left-behind", "w")
threading.Thread(target=time.sleep, args=(3600,), daemon=True, name="left-behind").start()
"""

# The next job of the same template: nothing of the previous job is there.
LOOK_FOR_LEFTOVERS = """
found = [t.name for t in threading.enumerate() if t.name == "left-behind"]
for name in os.listdir("/proc/self/fd"):
    try:
        if "left-behind" in os.readlink(f"/proc/self/fd/{name}"):
            found.append(f"fd {name}")
    except OSError:
        pass
if found:
    raise RuntimeError(f"left behind by the previous job: {found}")
"""

SLEEP = "time.sleep(@SECONDS@)"


@pytest.fixture
def data_dir():
    path = Path(tempfile.mkdtemp(prefix="ade-template-"))
    path.chmod(0o755)
    yield path / "data"
    shutil.rmtree(path, ignore_errors=True)


def _settings(data_dir: Path):
    settings = load_settings(
        {},
        data_dir=data_dir,
        max_concurrency=2,
        queue_size=4,
        job_timeout_seconds=30.0,
        worker_start="fork",
        shutdown_grace_seconds=5.0,
    )
    settings.jobs_dir.mkdir(parents=True)
    return settings


async def _templates(runtime) -> list[int]:
    with trio.fail_after(60):
        while True:
            servers = [s for s in runtime.lifecycle.starters if isinstance(s, ForkServer)]
            pids = [s.template_pid for s in servers]
            if len(pids) == 2 and all(pids):
                return pids
            await trio.sleep(0.02)


async def _quiet_templates(runtime) -> list[int]:
    """The templates, once each has its child for the next job forked and waiting: no
    launch in flight, so a template holds no pipe of a child being forked."""
    templates = await _templates(runtime)
    with trio.fail_after(60):
        while not all(
            s.prepared_pid for s in runtime.lifecycle.starters if isinstance(s, ForkServer)
        ):
            await trio.sleep(0.02)
    return templates


async def test_a_job_cannot_signal_trace_read_or_reach_a_template_or_a_sibling(data_dir):
    require("pid_namespace", "seccomp", "uid_drop")
    settings = _settings(data_dir)
    root = data_dir.parent
    document = await store_document(settings, root / "input.xlsx")
    sleeper = await publish(
        settings, write_package(root / "sleeper", SLEEP.replace("@SECONDS@", "8"))
    )
    async with open_runtime(settings) as runtime:
        templates = await _templates(runtime)
        sibling = await runtime.submit(
            workspace_id="ws", config_version_id=sleeper, document_ids=[document]
        )
        sibling_dir = settings.jobs_dir / sibling.id
        with trio.fail_after(30):
            while not processes_in(sibling_dir):
                await trio.sleep(0.02)
        siblings = processes_in(sibling_dir)
        targets = [*templates, *siblings]
        attack = await publish(
            settings,
            write_package(
                root / "attack", GO_AFTER.replace("@TARGETS@", ", ".join(map(str, targets)))
            ),
        )
        attacker = await runtime.submit(
            workspace_id="ws", config_version_id=attack, document_ids=[document]
        )
        with trio.fail_after(60):
            final = await runtime.wait("ws", attacker.id)
            sibling_final = await runtime.wait("ws", sibling.id)
        assert (final.status, final.error_message) == (JobStatus.SUCCESS, None), final
        assert final.worker_start == "fork"
        assert sibling_final.status is JobStatus.SUCCESS, sibling_final
        # the templates live on, unrestarted
        assert await _templates(runtime) == templates
        assert runtime.statistics().template_restarts == 0
        assert all(os.path.exists(f"/proc/{pid}") for pid in templates)


async def test_nothing_a_job_leaves_behind_reaches_the_next_job_of_its_template(data_dir):
    settings = _settings(data_dir)
    root = data_dir.parent
    document = await store_document(settings, root / "input.xlsx")
    leaver = await publish(settings, write_package(root / "leaver", LEAVE_BEHIND))
    looker = await publish(settings, write_package(root / "looker", LOOK_FOR_LEFTOVERS))
    async with open_runtime(settings) as runtime:
        templates = await _quiet_templates(runtime)
        before = {pid: _fds_and_threads(pid) for pid in templates}
        finals = []
        for config in (leaver, looker, leaver, looker):  # each worker gets both in turn
            job = await runtime.submit(
                workspace_id="ws", config_version_id=config, document_ids=[document]
            )
            with trio.fail_after(60):
                finals.append(await runtime.wait("ws", job.id))
        for final in finals:
            assert (final.status, final.error_message) == (JobStatus.SUCCESS, None), final
            assert processes_in(settings.jobs_dir / final.id) == []
        assert await _quiet_templates(runtime) == templates
        assert {pid: _fds_and_threads(pid) for pid in templates} == before
        assert all(threads == 1 for _, threads in before.values())
        assert runtime.statistics().template_restarts == 0


def _fds_and_threads(pid: int) -> tuple[int, int]:
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    with open(f"/proc/{pid}/status") as f:
        threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    return fds, threads
