"""One function per sandbox layer. Each either applies its layer completely or raises
:class:`LayerUnavailable` naming the layer and the reason; none of them swallows a failure.

They are called by :mod:`ade.sandbox.confine` in a fixed order (see there for why the order is
what it is). Nothing here imports anything heavy: this runs before the job's config code, in a
process whose memory and time are already limited.
"""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import select
import signal
import socket
import stat
import struct
from collections.abc import Iterable

from ade.sandbox import _bpf, _sys
from ade.sandbox import cgroup as _cgroup
from ade.sandbox.spec import Preconfinement, SandboxSpec, standby_cgroup_owner

# What the job-independent layers read: the job's spec or the standby's part of it.
_Limits = SandboxSpec | Preconfinement

__all__ = [
    "NETWORK_READONLY_PATHS",
    "SYSTEM_READONLY_PATHS",
    "LayerUnavailable",
    "apply_landlock",
    "apply_memory_rlimit",
    "apply_nproc_rlimit",
    "apply_rlimits",
    "apply_seccomp",
    "bring_loopback_up",
    "drop_capabilities",
    "drop_uid",
    "enter_pid_namespace",
    "expose_paths_for_uid",
    "hidden_ancestor",
    "hidden_ancestors",
    "join_cgroup",
    "mount_fresh_proc",
    "set_cpu_priority",
    "set_no_new_privs",
    "unshare_ipc",
    "unshare_mount",
    "unshare_network",
    "unshare_user",
]

MIB = 1024 * 1024

# Read-only for every job: shared libraries that C extension modules load lazily (zlib for
# openpyxl's zip files, libffi for ctypes ...) and time-zone data. No secrets live here.
SYSTEM_READONLY_PATHS: tuple[str, ...] = (
    "/lib",
    "/lib64",
    "/usr/lib",
    "/usr/lib64",
    "/usr/local/lib",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/mime.types",  # mimetypes (imported by openpyxl) reads it when present
    "/usr/share/zoneinfo",
)
# Read-only for a job allowed on the network only: name resolution and TLS trust anchors.
NETWORK_READONLY_PATHS: tuple[str, ...] = (
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/usr/share/ca-certificates",
)
_DEV_READ = ("/dev/urandom", "/dev/random", "/dev/zero")
_DEV_READ_WRITE = ("/dev/null",)


class LayerUnavailable(Exception):
    """A layer could not be applied on this machine or in this process."""

    def __init__(self, layer: str, reason: str) -> None:
        super().__init__(f"{layer}: {reason}")
        self.layer = layer
        self.reason = reason


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) if exc.errno else str(exc)


# -- rlimits ----------------------------------------------------------------------------------


def _setrlimit(layer: str, name: str, which: int, soft: int, hard: int) -> None:
    try:
        resource.setrlimit(which, (soft, hard))
    except (OSError, ValueError) as exc:
        raise LayerUnavailable(layer, f"setrlimit({name}, {soft}) failed: {exc}") from None


def apply_rlimits(spec: _Limits) -> None:
    """CPU seconds (SIGXCPU at the soft limit, SIGKILL one second later), largest file written
    (EFBIG / SIGXFSZ), open descriptors, and no core dumps (a dump of a job's memory is a copy
    of its customer data left on disk)."""
    _setrlimit("rlimits", "RLIMIT_CORE", resource.RLIMIT_CORE, 0, 0)
    _setrlimit("rlimits", "RLIMIT_NOFILE", resource.RLIMIT_NOFILE, spec.max_files, spec.max_files)
    fsize = spec.fsize_mb * MIB
    _setrlimit("rlimits", "RLIMIT_FSIZE", resource.RLIMIT_FSIZE, fsize, fsize)
    _setrlimit("rlimits", "RLIMIT_CPU", resource.RLIMIT_CPU, spec.cpu_seconds, spec.cpu_seconds + 1)


def apply_memory_rlimit(spec: _Limits) -> None:
    """Fallback memory limit when there is no memory cgroup: address space. Counts reserved,
    not used, memory, which is why MALLOC_ARENA_MAX=2 matters (the supervisor's env)."""
    limit = spec.mem_mb * MIB
    _setrlimit("rlimit_as", "RLIMIT_AS", resource.RLIMIT_AS, limit, limit)


def apply_nproc_rlimit(spec: _Limits, *, dropping_to: int | None = None) -> None:
    """Fallback process cap when there is no pids cgroup. Counted per real uid across the whole
    machine and ignored for root, so it only means something under a dedicated uid: call it
    just before dropping to ``dropping_to``."""
    if (dropping_to if dropping_to is not None else os.getuid()) == 0:
        raise LayerUnavailable("rlimit_nproc", "RLIMIT_NPROC does not apply to root")
    n = spec.max_processes
    _setrlimit("rlimit_nproc", "RLIMIT_NPROC", resource.RLIMIT_NPROC, n, n)


# -- CPU priority -------------------------------------------------------------------------------


def set_cpu_priority(nice: int) -> None:
    """Run this process, and its session, at ``nice``: below the service under contention.

    Not a layer (it enforces nothing a job could abuse): the job yields the CPU to the
    service's event loop. Two knobs, because with autogroup scheduling (``kernel.
    sched_autogroup_enabled=1``, the default on most distributions) the kernel first shares
    the CPU between *sessions*, and a process's own nice value only counts within its session:
    a worker in its own session at nice 10 still got as much CPU as the service. So the
    session's autogroup is set to the same nice value too (``/proc/self/autogroup``)."""
    os.setpriority(os.PRIO_PROCESS, 0, nice)
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
    except OSError:
        pass  # no autogroup scheduling on this kernel: the process's nice value is what counts


# -- cgroup -----------------------------------------------------------------------------------


def join_cgroup(spec: _Limits) -> _cgroup.JobCgroup:
    """Move this process into the job cgroup the supervisor created (memory + pids) — or, for a
    process confined ahead of its job, into its own cgroup, which becomes the job's."""
    if spec.cgroup is None:
        raise LayerUnavailable("cgroup", "the service created no cgroup for this job")
    try:
        if standby_cgroup_owner(spec.cgroup) is not None:
            return _cgroup.await_placement(spec.cgroup)  # the service moves us: see there
        return _cgroup.join(spec.cgroup)
    except OSError as exc:
        raise LayerUnavailable("cgroup", str(exc)) from None


# -- namespaces -------------------------------------------------------------------------------


def unshare_user() -> None:
    """Unprivileged service only: a user namespace owning the network/pid/mount namespaces
    created next, with our own uid mapped to itself (so files stay ours)."""
    uid, gid = os.getuid(), os.getgid()
    try:
        _sys.unshare(_sys.CLONE_NEWUSER)
    except OSError as exc:
        raise LayerUnavailable(
            "user_namespace", f"unshare(CLONE_NEWUSER): {_reason(exc)}"
        ) from None
    maps = (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1"))
    for name, text in maps:
        try:
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        except OSError as exc:
            raise LayerUnavailable(
                "user_namespace", f"writing /proc/self/{name}: {_reason(exc)}"
            ) from None


def unshare_network() -> None:
    try:
        _sys.unshare(_sys.CLONE_NEWNET)
    except OSError as exc:
        raise LayerUnavailable(
            "network_namespace", f"unshare(CLONE_NEWNET): {_reason(exc)}"
        ) from None


def bring_loopback_up() -> None:
    """A new network namespace has only ``lo``, and it is down: bring it up so config code can
    still talk to 127.0.0.1 inside its own namespace (a local helper server, say)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            request = struct.pack("16sH14x", b"lo", 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), siocgifflags, request))[1]
            fcntl.ioctl(s.fileno(), siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))
    except OSError as exc:
        raise LayerUnavailable("network_namespace", f"cannot bring lo up: {_reason(exc)}") from None


def unshare_ipc() -> None:
    """A private System V IPC / POSIX message-queue namespace: the job can neither reach other
    processes' shared memory, semaphores or queues, nor leave its own behind (they are freed
    with the namespace when the job's last process exits)."""
    try:
        _sys.unshare(_sys.CLONE_NEWIPC)
    except OSError as exc:
        raise LayerUnavailable("ipc_namespace", f"unshare(CLONE_NEWIPC): {_reason(exc)}") from None


def unshare_mount() -> None:
    try:
        _sys.unshare(_sys.CLONE_NEWNS)
        # Nothing we mount may propagate back to the host.
        _sys.mount(None, "/", None, _sys.MS_REC | _sys.MS_PRIVATE, None)
    except OSError as exc:
        raise LayerUnavailable("mount_namespace", f"unshare(CLONE_NEWNS): {_reason(exc)}") from None


def _wait_status(pid: int) -> int:
    while True:
        try:
            got, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return 0
        if got == pid:
            return status


def _mirror_and_exit(status: int) -> None:
    """Exit the way a child with wait status ``status`` did, so the supervisor sees the job's
    own exit code or signal (-N), not ours."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        sig = -code
        try:
            if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be handled anyway
                signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
            os.kill(os.getpid(), sig)
        except (OSError, ValueError):
            pass
        code = 128 + sig  # only if the signal did not end us (it should have)
    os._exit(code)


def enter_pid_namespace(*, private_mounts: bool) -> None:
    """Make the rest of the job run in a new PID namespace. Returns only in the job process.

    Three processes: the *outer* one (our pid, in the supervisor's process group) waits and
    mirrors the job's exit; *pid 1* of the new namespace is a tiny reaper; the *job* (pid 2)
    returns from here. Why not let the job be pid 1: the kernel drops signals with default
    action sent to a namespace's init — SIGXCPU at the CPU limit included — and init cannot
    re-raise a signal at itself to mirror a death. When pid 1 exits, the kernel SIGKILLs every
    process left in the namespace: setsid daemons and double forks included.
    """
    try:
        _sys.unshare(_sys.CLONE_NEWPID)
    except OSError as exc:
        raise LayerUnavailable("pid_namespace", f"unshare(CLONE_NEWPID): {_reason(exc)}") from None
    alive_r, alive_w = os.pipe()  # write end held by the outer process only
    status_r, status_w = os.pipe()  # pid 1 -> outer: the job's wait status
    try:
        init = os.fork()
    except OSError as exc:
        for fd in (alive_r, alive_w, status_r, status_w):
            os.close(fd)
        raise LayerUnavailable("pid_namespace", f"fork: {_reason(exc)}") from None
    if init:
        os.close(alive_r)
        os.close(status_w)
        own = _wait_status(init)
        reported = os.read(status_r, 4)
        _mirror_and_exit(struct.unpack("i", reported)[0] if len(reported) == 4 else own)
    # pid 1 of the namespace. Whatever goes wrong here must end this process: returning (or
    # raising) would let the reaper run the job's code without the layers still to come.
    try:
        job = _become_init(alive_r, alive_w, status_r, private_mounts)
    except BaseException as exc:
        os.write(2, f"ade.sandbox: the PID namespace's init failed: {exc!r}\n".encode())
        os._exit(_INIT_FAILED)
    if job == 0:
        os.close(status_w)
        return
    try:
        while True:  # reap everything re-parented to us until the job itself ends
            pid, status = os.waitpid(-1, 0)
            if pid == job:
                os.write(status_w, struct.pack("i", status))
                os._exit(0)
    except BaseException:
        os._exit(_INIT_FAILED)


# pid 1 could not set the namespace up (or lost its job): the outer process exits with this.
_INIT_FAILED = 125


def _become_init(alive_r: int, alive_w: int, status_r: int, private_mounts: bool) -> int:
    """pid 1's set-up; returns the result of forking the job process."""
    os.close(alive_w)
    os.close(status_r)
    _sys.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the outer dies -> we die -> all die
    if select.select([alive_r], [], [], 0)[0]:  # outer died before PDEATHSIG was set
        os._exit(1)
    os.close(alive_r)
    # Python's own SIGINT handler would turn a signal from the job into a traceback here.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    if private_mounts:  # never over the host's /proc: only inside our own mount namespace
        try:
            mount_fresh_proc()
        except LayerUnavailable:
            pass  # reported by confine: it checks for the fresh /proc itself
    return os.fork()


def mount_fresh_proc() -> None:
    """A /proc that shows only this PID namespace: /proc/1/environ is then our own (minimal)
    environment, not the host's init or the server's."""
    if os.getpid() != 1:
        raise LayerUnavailable("mount_namespace", "a fresh /proc needs the PID namespace")
    try:
        _sys.mount("proc", "/proc", "proc", _sys.MS_NOSUID | _sys.MS_NODEV | _sys.MS_NOEXEC, None)
    except OSError as exc:
        raise LayerUnavailable("mount_namespace", f"mount /proc: {_reason(exc)}") from None


# -- identity ---------------------------------------------------------------------------------


def _searchable(directory: str, uid: int, gid: int) -> bool:
    st = os.stat(directory)
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def hidden_ancestor(path: str, uid: int, gid: int) -> str | None:
    """The outermost directory above ``path`` that ``uid`` cannot traverse, if any. Only the
    directories above are looked at: ``path`` itself need not exist."""
    parts = path.strip("/").split("/")
    current = "/"
    for part in parts[:-1]:
        current = os.path.join(current, part)
        if not _searchable(current, uid, gid):
            return current
    return None


def hidden_ancestors(paths: Iterable[str], uid: int, gid: int) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in paths:
        if os.path.exists(path):
            ancestor = hidden_ancestor(path, uid, gid)
            if ancestor is not None:
                found.setdefault(ancestor, []).append(path)
    return found


def expose_paths_for_uid(
    readonly: Iterable[str], writable: Iterable[str], uid: int, gid: int
) -> list[str]:
    """Make the allow-listed paths reachable for ``uid`` when a parent directory is not (the
    interpreter lives under /root, 0700). Inside our private mount namespace, the blocking
    directory is covered by an empty tmpfs and only the needed paths are bind-mounted back —
    read-only ones read-only — so the rest of /root stays invisible. Returns the covered dirs."""
    readonly, writable = list(readonly), list(writable)
    covered = hidden_ancestors([*readonly, *writable], uid, gid)
    for ancestor, paths in sorted(covered.items()):
        # Opened before the tmpfs hides them; bind-mounted from the fd afterwards.
        fds = {p: os.open(p, os.O_PATH | os.O_CLOEXEC) for p in dict.fromkeys(paths)}
        try:
            try:
                _sys.mount("tmpfs", ancestor, "tmpfs", _sys.MS_NOSUID | _sys.MS_NODEV, "mode=755")
            except OSError as exc:
                raise LayerUnavailable(
                    "uid_drop", f"cannot cover {ancestor} with a tmpfs: {_reason(exc)}"
                ) from None
            # Parents before children; read-only before writable, so a writable directory
            # inside a read-only one is mounted on top of it.
            order = sorted(fds, key=lambda p: (p.count("/"), p in writable))
            for path in order:
                is_dir = stat.S_ISDIR(os.fstat(fds[path]).st_mode)
                if not os.path.lexists(path):
                    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
                    if is_dir:
                        os.mkdir(path, 0o755)
                    else:
                        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o444))
                try:
                    _sys.mount(
                        f"/proc/self/fd/{fds[path]}", path, None, _sys.MS_BIND | _sys.MS_REC, None
                    )
                    if path not in writable:
                        flags = _sys.MS_BIND | _sys.MS_REMOUNT | _sys.MS_RDONLY | _sys.MS_NOSUID
                        _sys.mount(None, path, None, flags | _sys.MS_NODEV, None)
                except OSError as exc:
                    raise LayerUnavailable(
                        "uid_drop", f"cannot re-expose {path}: {_reason(exc)}"
                    ) from None
        finally:
            for fd in fds.values():
                os.close(fd)
    return sorted(covered)


def drop_uid(uid: int, gid: int) -> None:
    """setresgid/setresuid to an unprivileged id. Done inside the already running interpreter,
    so the interpreter's executable need not be executable by that uid. Leaving uid 0 clears
    every capability (no PR_SET_KEEPCAPS)."""
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        raise LayerUnavailable("uid_drop", f"setresuid({uid}): {_reason(exc)}") from None
    if os.getuid() != uid or os.geteuid() != uid:
        raise LayerUnavailable("uid_drop", f"still uid {os.geteuid()} after setresuid({uid})")


def drop_capabilities() -> None:
    """Empty every capability set: used when the uid cannot be dropped (the job stays root but
    powerless) and after the user-namespace setup of an unprivileged service."""
    try:
        _sys.capset_empty()
    except OSError as exc:
        raise LayerUnavailable("capabilities", f"capset: {_reason(exc)}") from None


def set_no_new_privs() -> None:
    try:
        _sys.prctl(38, 1)  # PR_SET_NO_NEW_PRIVS
        if _sys.prctl(39) != 1:  # PR_GET_NO_NEW_PRIVS
            raise OSError(errno.EPERM, "no_new_privs did not stick")
    except OSError as exc:
        raise LayerUnavailable(
            "no_new_privs", f"prctl(PR_SET_NO_NEW_PRIVS): {_reason(exc)}"
        ) from None


# -- Landlock ---------------------------------------------------------------------------------

_FS_EXECUTE = 1 << 0
_FS_WRITE_FILE = 1 << 1
_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
_FS_ABI1 = (1 << 13) - 1  # execute .. make_sym
_FS_REFER = 1 << 13  # ABI 2
_FS_TRUNCATE = 1 << 14  # ABI 3
_FS_IOCTL_DEV = 1 << 15  # ABI 5
_FS_FILE_ONLY = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV
_NET_TCP = (1 << 0) | (1 << 1)  # bind, connect: ABI 4
_SCOPE_ALL = (1 << 0) | (1 << 1)  # abstract unix sockets, signals: ABI 6


def _fs_handled(abi: int) -> int:
    handled = _FS_ABI1
    if abi >= 2:
        handled |= _FS_REFER
    if abi >= 3:
        handled |= _FS_TRUNCATE
    if abi >= 5:
        handled |= _FS_IOCTL_DEV
    return handled


def apply_landlock(
    readonly: Iterable[str], writable: Iterable[str], *, network: bool, fresh_proc: bool
) -> int:
    """Filesystem allow-list for this process and everything it starts: read (never execute)
    the allow-listed read-only paths, read and write the writable ones, nothing else. Also,
    where the kernel has them: deny TCP bind/connect (ABI 4) unless ``network``, and scope
    signals and abstract unix sockets to the job (ABI 6: os.kill of the server fails).
    Returns the ABI used."""
    try:
        abi = _sys.landlock_abi()
    except OSError as exc:
        raise LayerUnavailable("landlock", f"not offered by this kernel: {_reason(exc)}") from None
    handled = _fs_handled(abi)
    net = _NET_TCP if abi >= 4 and not network else 0
    scoped = _SCOPE_ALL if abi >= 6 else 0
    read = _FS_READ_FILE | _FS_READ_DIR
    system = SYSTEM_READONLY_PATHS + (NETWORK_READONLY_PATHS if network else ())
    rules: list[tuple[str, int]] = [(p, read) for p in (*system, *readonly)]
    rules += [(p, _FS_READ_FILE) for p in _DEV_READ]
    rules += [(p, _FS_READ_FILE | _FS_WRITE_FILE | _FS_TRUNCATE) for p in _DEV_READ_WRITE]
    if fresh_proc:  # only this namespace's processes are in it
        rules.append(("/proc", read))
    # Everything but execute: a binary the job writes (or copies) into tmp/ must not run.
    rules += [(p, handled & ~_FS_EXECUTE) for p in writable]
    try:
        ruleset = _sys.landlock_create_ruleset(handled, net, scoped, abi)
    except OSError as exc:
        raise LayerUnavailable("landlock", f"create_ruleset: {_reason(exc)}") from None
    try:
        for path, access in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except (FileNotFoundError, PermissionError):
                # Nothing there, or out of our reach already (an unprivileged service cannot
                # traverse /root): nothing to allow.
                continue
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    access &= _FS_FILE_ONLY
                _sys.landlock_add_rule(ruleset, fd, access & handled)
            finally:
                os.close(fd)
        _sys.landlock_restrict_self(ruleset)
    except OSError as exc:
        raise LayerUnavailable("landlock", f"{_reason(exc)}") from None
    finally:
        os.close(ruleset)
    return abi


# -- seccomp ----------------------------------------------------------------------------------


def apply_seccomp(*, network: bool) -> None:
    """A syscall filter (hand-assembled BPF, see _bpf): deny the kernel attack surface listed
    in ``_bpf.DENIED_SYSCALLS``, clone() with namespace flags, clone3 (ENOSYS: glibc falls back
    to clone, whose flags BPF can read) and — unless ``network`` — socket() of every family
    (unix ones included: see _bpf), which stops _socket, ctypes and child processes alike
    (filters are inherited). socketpair() is allowed."""
    try:
        _bpf.load_filter(_bpf.build_filter(network=network))
    except OSError as exc:
        raise LayerUnavailable("seccomp", str(exc)) from None
