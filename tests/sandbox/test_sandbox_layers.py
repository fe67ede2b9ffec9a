"""Each layer on its own, in a real confined child: the layer applies, and the thing it exists
to stop fails. The hostile-config suite (test_hostile_configs.py) attacks the whole service."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from support.sandbox import (
    PRELUDE,
    ROOT,
    make_job,
    processes_with,
    require,
    run_confined,
    spec_for,
)

from ade.sandbox import LAYERS
from ade.serde import converter


@pytest.fixture
def job(tmp_path):
    return make_job(tmp_path)


def test_every_layer_applies_on_this_machine(job):
    require(*LAYERS)
    run = run_confined(spec_for(job), "print('ran')", with_cgroup=True)
    assert run.returncode == 0, run.stderr
    assert run.applied == LAYERS
    assert run.missing == {}
    assert run.stdout == "ran\n"


# -- rlimits ----------------------------------------------------------------------------------


def test_cpu_spin_dies_with_sigxcpu(job):
    run = run_confined(spec_for(job, cpu_seconds=1), "while True: pass", timeout=20)
    assert run.returncode == -signal.SIGXCPU


def test_file_size_limit_gives_efbig(job):
    code = """
    import errno
    try:
        with open("tmp/big", "wb") as f:
            f.write(b"x" * (3 * 1024 * 1024))
    except OSError as exc:
        print(errno.errorcode[exc.errno])
    """
    run = run_confined(spec_for(job, fsize_mb=2), code)
    assert run.stdout == "EFBIG\n", run.stderr
    assert os.path.getsize(job / "tmp" / "big") == 2 * 1024 * 1024


def test_descriptor_limit_gives_emfile_and_no_core_dumps(job):
    code = """
    import errno, os, resource
    print(resource.getrlimit(resource.RLIMIT_CORE))
    fds = []
    try:
        while True:
            fds.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as exc:
        print(errno.errorcode[exc.errno], len(fds) < 40)
    """
    run = run_confined(spec_for(job, max_files=40), code)
    assert run.stdout == "(0, 0)\nEMFILE True\n", run.stderr


def test_rlimit_as_is_the_fallback_without_a_memory_cgroup(job):
    code = """
    try:
        block = bytearray(400 * 1024 * 1024)
    except MemoryError:
        print("MemoryError")
    """
    run = run_confined(spec_for(job, mem_mb=200), code)
    assert "rlimit_as" in run.applied and "memory_cgroup" not in run.applied
    assert run.missing["memory_cgroup"] == "the service created no cgroup for this job"
    assert run.stdout == "MemoryError\n"


# -- cgroups ----------------------------------------------------------------------------------


def test_memory_cgroup_kills_at_the_limit_and_reports_oom(job):
    require("memory_cgroup")
    code = """
    chunks = []
    while True:
        chunks.append(b"x" * (16 * 1024 * 1024))
    """
    run = run_confined(spec_for(job, mem_mb=128), code, with_cgroup=True)
    assert "memory_cgroup" in run.applied and "rlimit_as" not in run.applied
    assert run.returncode == -signal.SIGKILL
    assert run.oom_killed


def test_pids_cgroup_stops_a_fork_bomb_even_for_root(job):
    require("pids_cgroup")
    code = """
    import os, time
    children = 0
    try:
        for _ in range(200):
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            children += 1
    except BlockingIOError:
        print("EAGAIN after", children)
    """
    run = run_confined(spec_for(job, max_processes=20), code, with_cgroup=True)
    # 20 pids in the cgroup: outer process, pid 1 of the namespace, the job, 17 children.
    assert run.stdout == "EAGAIN after 17\n", run.stderr
    assert processes_with(run.marker) == []


# -- namespaces -------------------------------------------------------------------------------


def test_network_namespace_has_only_loopback_which_is_up(job):
    require("network_namespace")
    # The namespace layer alone (no seccomp yet at this point of the code): outside addresses
    # are unreachable, DNS included, and 127.0.0.1 is our own private loopback.
    code = """
    import socket
    from ade.sandbox import layers as L
    L.unshare_network(); L.bring_loopback_up()
    print(sorted(name for _, name in socket.if_nameindex()))
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=2)
    except OSError as exc:
        print(type(exc).__name__)
    try:
        socket.getaddrinfo("example.com", 80)
    except OSError as exc:
        print("dns", type(exc).__name__)
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    print("loopback ok")
    """
    proc = subprocess.run(
        [sys.executable, "-I", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert proc.stdout.splitlines() == ["['lo']", "OSError", "dns gaierror", "loopback ok"], (
        proc.stderr
    )


def test_pid_namespace_hides_other_processes_and_the_job_is_pid_2(job):
    require("pid_namespace", "mount_namespace")
    code = """
    import os
    print(os.getpid(), os.getppid())
    print(sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
    """
    run = run_confined(spec_for(job), code)
    assert run.stdout == "2 1\n[1, 2]\n", run.stderr


def test_setsid_daemon_and_double_fork_die_with_the_job(job):
    require("pid_namespace")
    code = """
    import os, time
    if os.fork() == 0:          # double fork + setsid: a classic daemon
        os.setsid()
        if os.fork() == 0:
            time.sleep(60)
        os._exit(0)
    time.sleep(0.2)
    print("leaving")
    """
    run = run_confined(spec_for(job), code)
    assert run.stdout == "leaving\n"
    time.sleep(0.1)
    assert processes_with(run.marker) == []


def test_killing_the_outer_process_kills_the_whole_namespace(job):
    require("pid_namespace")
    marker = "m" + os.urandom(8).hex()
    code = PRELUDE + (
        "import os, time\n"
        "for _ in range(3):\n"
        "    if os.fork() == 0:\n"
        "        os.setsid(); time.sleep(60)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-I",
            "-c",
            code,
            # Without a cgroup the spec falls back to RLIMIT_NPROC, which counts every process
            # of uid 65534 on the machine (earlier tests' jobs may still be being torn down):
            # this test is about the PID namespace, so give it room.
            converter.dumps(spec_for(job, max_processes=100_000)),
            str(job / "tmp"),
            marker,
        ],
        stdout=subprocess.PIPE,
        cwd=job,
    )
    assert proc.stdout is not None
    with proc.stdout:
        try:
            proc.stdout.readline()
            assert proc.stdout.readline() == b"ready\n"
            assert len(processes_with(marker)) == 6  # outer, pid 1, job, 3 children
        finally:
            proc.kill()  # the outer process only: PDEATHSIG takes pid 1, the kernel the rest
            proc.wait()
    deadline = time.monotonic() + 2
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert processes_with(marker) == []


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("import sys; sys.exit(7)", 7),
        ("import os; os.kill(os.getpid(), 11)", -signal.SIGSEGV),
        ("import ctypes; ctypes.string_at(0)", -signal.SIGSEGV),
        ("import os; os._exit(0)", 0),
    ],
)
def test_the_outer_process_mirrors_the_jobs_exit(job, code, expected):
    run = run_confined(spec_for(job), code)
    assert run.returncode == expected


def test_ipc_namespace_keeps_sysv_objects_private_and_frees_them(job):
    require("ipc_namespace")
    key = 0x0ADE5EC7
    code = f"""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    segment = libc.shmget({key}, 4096, 0o1000 | 0o666)  # IPC_CREAT
    print(segment >= 0, open("/proc/sysvipc/shm").read().count("\\n"))
    """
    run = run_confined(spec_for(job), code)
    assert run.stdout == "True 2\n", run.stderr  # header + its own segment, nobody else's
    with open("/proc/sysvipc/shm") as f:
        assert all(line.split()[0] != str(key) for line in f.readlines()[1:])


# -- identity ---------------------------------------------------------------------------------


def test_root_service_runs_the_job_as_nobody_without_capabilities(job):
    if not ROOT:
        pytest.skip("the service is not root here: there is no uid to drop")
    require("uid_drop")
    code = """
    import os
    print(os.getresuid(), os.getresgid(), os.getgroups())
    with open("/proc/self/status") as f:
        print([l.split()[1] for l in f if l.startswith(("CapEff", "CapPrm", "NoNewPrivs"))])
    open("tmp/written", "w").write("ok")
    print(os.stat("tmp/written").st_uid)
    """
    run = run_confined(spec_for(job), code)
    assert run.stdout.splitlines() == [
        "(65534, 65534, 65534) (65534, 65534, 65534) []",
        "['0000000000000000', '0000000000000000', '1']",
        "65534",
    ], run.stderr


def test_interpreter_under_a_private_root_still_imports_after_the_uid_drop(job):
    require("uid_drop", "mount_namespace")
    # The stdlib is under /root/.pyenv here (/root is 0700): modules imported only after the
    # drop must still load, while the rest of /root stays hidden.
    code = """
    import os, decimal, zoneinfo, sqlite3, openpyxl
    print("imported")
    try:
        os.listdir(os.path.expanduser("~root"))
    except OSError as exc:
        print(type(exc).__name__)
    """
    run = run_confined(spec_for(job), code)
    assert run.stdout == "imported\nPermissionError\n", run.stderr


# -- Landlock ---------------------------------------------------------------------------------


def test_landlock_allows_own_job_and_denies_everything_else(tmp_path):
    require("landlock")
    job = make_job(tmp_path, "job")
    other = make_job(tmp_path, "other")
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    (snapshot / "manifest.json").write_text("{}")
    code = """
    import errno, os
    def attempt(label, fn):
        try:
            fn()
            print(label, "allowed")
        except OSError as exc:
            print(label, errno.errorcode[exc.errno])
    attempt("own input", lambda: open("inputs/001-doc.csv").read())
    attempt("own tmp write", lambda: open("tmp/out.txt", "w").write("x"))
    attempt("snapshot read", lambda: open(SNAP + "/manifest.json").read())
    attempt("snapshot write", lambda: open(SNAP + "/manifest.json", "w"))
    attempt("own input write", lambda: open("inputs/001-doc.csv", "a"))
    attempt("other job read", lambda: open(OTHER + "/inputs/001-doc.csv").read())
    attempt("other job write", lambda: open(OTHER + "/tmp/x", "w"))
    attempt("etc shadow", lambda: open("/etc/shadow").read())
    attempt("write /tmp", lambda: open("/tmp/ade-escape", "w"))
    attempt("exec", lambda: os.execv("/bin/true", ["true"]))
    import shutil, sys
    shutil.copy(os.path.realpath(sys.executable), "tmp/own-binary")
    os.chmod("tmp/own-binary", 0o755)
    attempt("exec own copy", lambda: os.execv("tmp/own-binary", ["x", "-c", "pass"]))
    """
    code = f"SNAP = {str(snapshot)!r}\nOTHER = {str(other)!r}\n" + textwrap.dedent(code)
    run = run_confined(spec_for(job, snapshot), code)
    # tmp_path lives under /tmp/pytest-of-root (0700): for the dropped uid the sandbox covers
    # it with a tmpfs and re-exposes only the allow-list, read-only binds included — so the
    # snapshot is EROFS and the other job does not even exist. Landlock (EACCES) stands
    # behind both; test_landlock_alone_denies_outside_the_allow_list checks it on its own.
    hidden = ROOT and "uid_drop" in run.applied
    assert run.stdout.splitlines() == [
        "own input allowed",
        "own tmp write allowed",
        "snapshot read allowed",
        f"snapshot write {'EROFS' if hidden else 'EACCES'}",
        "own input write EACCES",
        f"other job read {'ENOENT' if hidden else 'EACCES'}",
        f"other job write {'ENOENT' if hidden else 'EACCES'}",
        "etc shadow EACCES",
        "write /tmp EACCES",
        "exec EACCES",
        "exec own copy EACCES",
    ], run.stderr
    assert not os.path.exists("/tmp/ade-escape")


def test_landlock_scopes_signals_to_the_job(job):
    require("landlock")
    victim = os.fork()
    if victim == 0:
        time.sleep(30)
        os._exit(0)
    try:
        code = f"""
        import os
        try:
            os.kill({victim}, 9)
            print("killed")
        except OSError as exc:
            print(type(exc).__name__)
        """
        run = run_confined(spec_for(job), code)
        assert run.stdout in ("PermissionError\n", "ProcessLookupError\n"), run.stderr
        assert os.waitpid(victim, os.WNOHANG) == (0, 0)  # still alive
    finally:
        os.kill(victim, signal.SIGKILL)
        os.waitpid(victim, 0)


# -- seccomp ----------------------------------------------------------------------------------


def test_seccomp_denies_sockets_and_dangerous_syscalls_but_not_socketpair(job):
    require("seccomp")
    code = """
    import ctypes, socket, _socket
    libc = ctypes.CDLL(None, use_errno=True)
    def attempt(label, fn):
        try:
            fn()
            print(label, "allowed")
        except OSError as exc:
            print(label, type(exc).__name__)
    attempt("inet", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    attempt("inet6 udp", lambda: _socket.socket(socket.AF_INET6, socket.SOCK_DGRAM))
    attempt("netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW))
    attempt("unix", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    attempt("socketpair", lambda: socket.socketpair())
    def raw(nr, *args):
        if libc.syscall(nr, *args) < 0:
            raise OSError(ctypes.get_errno(), "")
    attempt("ctypes socket", lambda: raw(41, 2, 1, 0))
    attempt("ptrace", lambda: raw(101, 16, 1, 0, 0))
    attempt("unshare", lambda: raw(272, 0x10000000))
    attempt("io_uring", lambda: raw(425, 1, 0))
    attempt("mount", lambda: raw(165, 0, 0, 0, 0, 0))
    import threading
    t = threading.Thread(target=lambda: None); t.start(); t.join()
    print("threads ok")
    """
    run = run_confined(spec_for(job), code)
    assert run.stdout.splitlines() == [
        "inet PermissionError",
        "inet6 udp PermissionError",
        "netlink PermissionError",
        "unix PermissionError",
        "socketpair allowed",
        "ctypes socket PermissionError",
        "ptrace PermissionError",
        "unshare PermissionError",
        "io_uring PermissionError",
        "mount PermissionError",
        "threads ok",
    ], run.stderr


def test_network_true_lets_the_job_resolve_and_reach_a_local_listener(job):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(20)
    port = listener.getsockname()[1]
    accepted: list[bool] = []

    def accept() -> None:
        try:
            conn, _ = listener.accept()
            accepted.append(True)
            conn.close()
        except OSError:
            pass

    thread = threading.Thread(target=accept)
    thread.start()
    code = f"""
    import socket
    socket.create_connection(("localhost", {port}), timeout=5).close()
    print("connected")
    """
    run = run_confined(spec_for(job, network=True), code)
    thread.join(timeout=20)
    listener.close()
    assert run.stdout == "connected\n", run.stderr
    assert accepted == [True]
    assert "network_allowed" in run.applied and "network_namespace" not in run.applied


def test_strict_mode_refuses_when_a_required_layer_cannot_apply(job):
    # No cgroup was created for this job, so the cgroup layers cannot apply.
    spec = spec_for(job, required=("memory_cgroup",))
    run = run_confined(spec, "print('config code ran')")
    assert run.returncode == 1
    assert "config code ran" not in run.stdout
    assert (
        "SandboxError: required sandbox layer 'memory_cgroup' could not be applied: "
        "the service created no cgroup for this job"
    ) in run.stderr


def test_landlock_alone_denies_outside_the_allow_list(tmp_path):
    require("landlock")
    job = make_job(tmp_path, "job")
    other = make_job(tmp_path, "other")
    code = f"""
    import errno
    from ade.sandbox import layers as L
    L.set_no_new_privs()
    L.apply_landlock([{str(job)!r}], [{str(job / "tmp")!r}], network=False, fresh_proc=False)
    for label, path, mode in [
        ("other read", {str(other / "inputs" / "001-doc.csv")!r}, "r"),
        ("other write", {str(other / "tmp" / "x")!r}, "w"),
        ("own input write", "inputs/001-doc.csv", "a"),
        ("own tmp write", "tmp/x", "w"),
    ]:
        try:
            open(path, mode).close()
            print(label, "allowed")
        except OSError as exc:
            print(label, errno.errorcode[exc.errno])
    """
    proc = subprocess.run(
        [sys.executable, "-I", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=job,
        timeout=20,
        check=False,
    )
    assert proc.stdout.splitlines() == [
        "other read EACCES",
        "other write EACCES",
        "own input write EACCES",
        "own tmp write allowed",
    ], proc.stderr
