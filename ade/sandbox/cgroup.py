"""Per-job cgroups: memory (the kernel kills at the limit, counted on real memory) and pids
(a process cap that holds for root, unlike RLIMIT_NPROC).

Parent side (the supervisor): :func:`create_job_cgroup` before the worker starts,
:func:`kill_job_cgroup` when the job must die, :func:`job_cgroup_oom_killed` to tell a memory
kill from any other SIGKILL, :func:`remove_job_cgroup` at the end. Worker side: :func:`join`.

Where: under the cgroup the service itself runs in (per controller), as ``<own>/<name>``.
Nesting under our own cgroup respects whatever limits the host put on the service, and the
worker — which starts in the service's cgroups — computes the very same directories from the
name alone, so nothing but the name travels in the spec. cgroup v1 (separate ``memory`` and
``pids`` hierarchies) and v2 (one unified hierarchy) are both handled; v1 wins where a
controller is mounted there.
"""

from __future__ import annotations

import errno
import os
import signal
import time

import attrs

__all__ = [
    "CgroupError",
    "JobCgroup",
    "add_process",
    "await_placement",
    "controller_dirs",
    "create_job_cgroup",
    "is_member",
    "job_cgroup_for",
    "job_cgroup_oom_killed",
    "join",
    "kill_job_cgroup",
    "pid_alive",
    "remove_dead_standby_cgroups",
    "remove_job_cgroup",
    "remove_leftover_job_cgroup",
    "rename_job_cgroup",
]

_ROOT = "/sys/fs/cgroup"


class CgroupError(OSError):
    """A cgroup operation failed; the message names the file and the reason."""


@attrs.frozen
class JobCgroup:
    name: str
    # controller ("memory" | "pids") -> absolute directory. With v2 both point at one directory.
    dirs: tuple[tuple[str, str], ...]
    version: int

    @property
    def controllers(self) -> tuple[str, ...]:
        return tuple(c for c, _ in self.dirs)

    def unique_dirs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(d for _, d in self.dirs))


def _own_cgroups() -> tuple[dict[str, str], str | None]:
    """(v1 controller -> own path, own v2 path) from /proc/self/cgroup."""
    v1: dict[str, str] = {}
    v2: str | None = None
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, controllers, path = line.rstrip("\n").split(":", 2)
            if hid == "0" and controllers == "":
                v2 = path
            for c in controllers.split(","):
                if c:
                    v1[c] = path
    return v1, v2


def controller_dirs() -> tuple[int, dict[str, str], dict[str, str]]:
    """(version, controller -> base directory to create job cgroups under, controller -> reason
    it is unusable). Base = the cgroup this process is in."""
    v1, v2 = _own_cgroups()
    bases: dict[str, str] = {}
    missing: dict[str, str] = {}
    version = 1
    for controller in ("memory", "pids"):
        mount = os.path.join(_ROOT, controller)
        if controller in v1 and os.path.isfile(os.path.join(mount, "cgroup.procs")):
            bases[controller] = os.path.normpath(mount + v1[controller])
    if not bases and v2 is not None:
        unified = _ROOT if os.path.isfile(os.path.join(_ROOT, "cgroup.controllers")) else None
        if unified is None and os.path.isfile(os.path.join(_ROOT, "unified", "cgroup.controllers")):
            unified = os.path.join(_ROOT, "unified")
        if unified is not None:
            version = 2
            base = os.path.normpath(unified + v2)
            try:
                with open(os.path.join(unified, "cgroup.controllers")) as f:
                    available = f.read().split()
            except OSError as exc:
                available = []
                missing["memory"] = missing["pids"] = f"cannot read cgroup.controllers: {exc}"
            for controller in ("memory", "pids"):
                if controller in available:
                    bases[controller] = base
    for controller in ("memory", "pids"):
        if controller not in bases and controller not in missing:
            missing[controller] = f"no {controller} controller mounted under {_ROOT}"
    return version, bases, missing


def _write(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise CgroupError(exc.errno, f"cannot write {path}: {exc.strerror}") from None


def _read_procs(directory: str) -> list[int]:
    try:
        with open(os.path.join(directory, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


def _job_dirs(name: str) -> tuple[int, dict[str, str], bool]:
    """(version, controller -> the job cgroup's directory, whether we are already in it).

    The base is the cgroup this process is in — unless that *is* the job cgroup (the
    supervisor already moved this worker there), then it is the job cgroup itself."""
    if "/" in name or name in ("", ".", ".."):
        raise CgroupError(errno.EINVAL, f"cgroup name {name!r} is not a single path component")
    version, bases, _ = controller_dirs()
    dirs: dict[str, str] = {}
    inside = bool(bases)
    for controller, base in bases.items():
        if os.path.basename(base) == name:
            dirs[controller] = base
        else:
            dirs[controller] = os.path.join(base, name)
            inside = False
    return version, dirs, inside


def create_job_cgroup(name: str, mem_mb: int, max_processes: int) -> JobCgroup:
    """Create (or reset a leftover of) the job's cgroup with its limits; raises CgroupError."""
    version, dirs, inside = _job_dirs(name)
    if not dirs:
        raise CgroupError(errno.ENOENT, "no memory or pids cgroup controller is available")
    if inside:
        raise CgroupError(errno.EINVAL, f"this process is itself in a cgroup named {name}")
    limit = str(mem_mb * 1024 * 1024)
    if version == 2:
        parent = os.path.dirname(next(iter(dirs.values())))
        wanted = " ".join(f"+{c}" for c in dirs)
        # v2 only lets a cgroup's children use a controller its subtree_control enables, and
        # refuses (EBUSY) while the cgroup itself holds processes ("no internal processes").
        try:
            _write(os.path.join(parent, "cgroup.subtree_control"), wanted)
        except CgroupError as exc:
            if exc.errno == errno.EBUSY:
                raise CgroupError(
                    errno.EBUSY,
                    f"{exc} (cgroup v2: the service's own cgroup holds processes; start the "
                    "service in a delegated cgroup and move it into a leaf of its own)",
                ) from None
            raise
    cgroup = JobCgroup(name, tuple(sorted(dirs.items())), version)
    for directory in cgroup.unique_dirs():
        if os.path.isdir(directory):  # left over by a crashed service: empty it and start over
            _kill_all(directory)
            _rmdir(directory)
        try:
            os.mkdir(directory)
        except OSError as exc:
            raise CgroupError(exc.errno, f"cannot create {directory}: {exc.strerror}") from None
    try:
        for controller, directory in cgroup.dirs:
            if controller == "memory" and version == 1:
                _write(os.path.join(directory, "memory.limit_in_bytes"), limit)
                memsw = os.path.join(directory, "memory.memsw.limit_in_bytes")
                if os.path.exists(memsw):  # swap must not be a way around the limit
                    _write(memsw, limit)
            elif controller == "memory":
                _write(os.path.join(directory, "memory.max"), limit)
                swap = os.path.join(directory, "memory.swap.max")
                if os.path.exists(swap):
                    _write(swap, "0")
            elif controller == "pids":
                _write(os.path.join(directory, "pids.max"), str(max_processes))
    except BaseException:
        remove_job_cgroup(cgroup)
        raise
    return cgroup


def add_process(cgroup: JobCgroup, pid: int) -> None:
    """Parent side: move the just-started worker ``pid`` into the job cgroup.

    Why the parent does it: a cgroup migration waits for an RCU grace period when none was in
    progress (6-15 ms measured on cgroup v1), which would more than double the sandbox's cost
    per job if the worker paid it. Done by the supervisor right after the spawn (in a thread),
    it overlaps the worker's interpreter start-up; :func:`join` in the worker then only checks.
    """
    for directory in cgroup.unique_dirs():
        _write(os.path.join(directory, "cgroup.procs"), str(pid))


def join(name: str) -> JobCgroup:
    """Worker side, before anything forks: make sure the calling process is in the job cgroup
    ``name`` — already moved there by the supervisor (:func:`add_process`), else move itself.
    Raises CgroupError when the cgroup does not exist or cannot be joined."""
    version, dirs, inside = _job_dirs(name)
    if not dirs:
        raise CgroupError(errno.ENOENT, "no memory or pids cgroup controller is available")
    cgroup = JobCgroup(name, tuple(sorted(dirs.items())), version)
    if inside:
        return cgroup
    for directory in cgroup.unique_dirs():
        if not os.path.isdir(directory):
            raise CgroupError(errno.ENOENT, f"job cgroup {directory} does not exist")
    # A partial move by the supervisor (one controller done) is completed here: writing our
    # pid into a cgroup we are already in is a no-op.
    add_process(cgroup, os.getpid())
    return cgroup


def await_placement(name: str, timeout: float = 10.0) -> JobCgroup:
    """A process started ahead of its job: wait until the service has moved it into its own
    cgroup ``name`` (it does so right after starting it). Never writes: once it has moved us,
    the service may rename the cgroup to the job's at any moment, and a move of our own
    racing that rename would fail. Placed means: no controller still has us in the cgroup
    that holds ``name`` (we are in ``name`` itself, or in it under the job's name). Raises
    CgroupError when not placed within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        version, bases, _ = controller_dirs()
        if not bases:
            raise CgroupError(errno.ENOENT, "no memory or pids cgroup controller is available")
        waiting = [
            controller
            for controller, base in bases.items()
            if os.path.basename(base) != name and os.path.isdir(os.path.join(base, name))
        ]
        if not waiting:
            return JobCgroup(name, tuple(sorted(bases.items())), version)
        if time.monotonic() > deadline:
            raise CgroupError(
                errno.ETIMEDOUT,
                f"the service did not move this process into cgroup {name} within {timeout:g} s",
            )
        time.sleep(0.001)


def is_member(name: str) -> bool:
    """Whether the calling process is in the cgroup ``name`` for every controller we use. Only
    reads /proc/self/cgroup: works after the uid drop, unlike :func:`join`."""
    return _job_dirs(name)[2]


def rename_job_cgroup(cgroup: JobCgroup, name: str) -> JobCgroup:
    """Give ``cgroup`` — with every process in it — the name ``name`` (the job's), in place.

    Why a rename: a process confined ahead of its job (a spawn standby) already sits in a
    cgroup of its own, created for it; when its job arrives, that cgroup becomes the job's by
    name, so everything keyed by the job's cgroup name (the supervisor's kill and clean-up,
    recovery's leftover sweep) is unchanged — and no process has to migrate on the job's path,
    which can no longer be done from inside anyway (the standby has dropped its uid, and its
    PID namespace holds three processes). cgroup v1 renames within the parent; v2 refuses
    (the caller then falls back to a standby confined at its job's arrival). A leftover of a
    crashed service under the target name is emptied and removed first."""
    version, target, _ = _job_dirs(name)
    renamed = JobCgroup(name, tuple(sorted(target.items())), version)
    if set(target) != set(cgroup.controllers):
        raise CgroupError(errno.EINVAL, f"cgroup {name} would have other controllers")
    for directory in renamed.unique_dirs():
        if os.path.isdir(directory):
            _kill_all(directory)
            _rmdir(directory)
    done: list[tuple[str, str]] = []
    try:
        for source, destination in zip(cgroup.unique_dirs(), renamed.unique_dirs(), strict=True):
            try:
                os.rename(source, destination)
            except OSError as exc:
                raise CgroupError(
                    exc.errno, f"cannot rename {source} to {name}: {exc.strerror}"
                ) from None
            done.append((source, destination))
    except BaseException:
        for source, destination in reversed(done):  # all or nothing: one name per cgroup
            os.rename(destination, source)
        raise
    return renamed


def job_cgroup_for(
    spec_cgroup: str | None, mem_mb: int, max_processes: int, *, required: bool
) -> JobCgroup | None:
    """Parent side convenience: the job's cgroup, or None when the spec has none. A creation
    failure raises when the cgroup layers are required (strict); otherwise it returns None and
    the worker reports the cgroup layers missing with the reason (and falls back to rlimits)."""
    if spec_cgroup is None:
        return None
    try:
        return create_job_cgroup(spec_cgroup, mem_mb, max_processes)
    except CgroupError:
        if required:
            raise
        return None


def _kill_all(directory: str) -> None:
    if os.path.exists(os.path.join(directory, "cgroup.kill")):
        _write(os.path.join(directory, "cgroup.kill"), "1")
        return
    # v1 has no cgroup.kill: SIGKILL every member until none is left. A forking process cannot
    # outrun this for long: pids.max bounds the forks and each pass kills all it sees.
    for _ in range(100):
        pids = _read_procs(directory)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def remove_leftover_job_cgroup(name: str) -> JobCgroup | None:
    """Kill the members of, and remove, the job cgroup ``name`` if a dead service left it
    (its supervisor never reached its own removal). Returns what was found, or None.

    Recovery calls this for every job it finds ``running``: only those can have a cgroup left,
    and naming it exactly never touches the jobs of another service sharing our cgroup.
    """
    version, dirs, inside = _job_dirs(name)
    existing = {c: d for c, d in dirs.items() if os.path.isdir(d)}
    if not existing or inside:
        return None
    cgroup = JobCgroup(name, tuple(sorted(existing.items())), version)
    if not remove_job_cgroup(cgroup):
        raise CgroupError(errno.EBUSY, f"job cgroup {name} is still busy after killing it")
    return cgroup


def remove_dead_standby_cgroups() -> list[str]:
    """Remove the standby cgroups (``standby_cgroup_name``) whose service is gone: a SIGKILLed
    service's standbys die with it (their lifeline), but the cgroups created for them stay.
    Those of a live service sharing our cgroup are left alone. Returns the names removed."""
    from ade.sandbox.spec import standby_cgroup_owner

    version, bases, _ = controller_dirs()
    removed: list[str] = []
    for base in dict.fromkeys(bases.values()):
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            owner = standby_cgroup_owner(name)
            if owner is None or owner == os.getpid() or pid_alive(owner):
                continue
            dirs = {c: os.path.join(b, name) for c, b in bases.items()}
            existing = {c: d for c, d in dirs.items() if os.path.isdir(d)}
            if existing and remove_job_cgroup(
                JobCgroup(name, tuple(sorted(existing.items())), version)
            ):
                removed.append(name)
    return sorted(set(removed))


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (another user's counts): whose leftovers may go."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    return True


def kill_job_cgroup(cgroup: JobCgroup) -> None:
    """SIGKILL every process in the job's cgroup (all controllers)."""
    for directory in cgroup.unique_dirs():
        if os.path.isdir(directory):
            _kill_all(directory)


def job_cgroup_oom_killed(cgroup: JobCgroup) -> bool:
    """Whether the kernel's OOM killer fired inside the job's memory cgroup."""
    directory = dict(cgroup.dirs).get("memory")
    if directory is None:
        return False
    name = "memory.oom_control" if cgroup.version == 1 else "memory.events"
    try:
        with open(os.path.join(directory, name)) as f:
            fields = dict(line.split() for line in f if line.strip())
    except OSError:
        return False
    if "oom_kill" in fields:
        return int(fields["oom_kill"]) > 0
    # Kernels before 4.13 have no oom_kill counter in v1: fall back to "the limit was hit"
    # (memory.failcnt), which for a job that died of SIGKILL is the OOM killer's doing.
    try:
        with open(os.path.join(directory, "memory.failcnt")) as f:
            return int(f.read().strip() or 0) > 0
    except (OSError, ValueError):
        return False


def _rmdir(directory: str) -> bool:
    # Killed processes leave the cgroup once reaped; a few ms at most.
    for attempt in range(200):
        try:
            os.rmdir(directory)
            return True
        except FileNotFoundError:
            return True
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise CgroupError(exc.errno, f"cannot remove {directory}: {exc.strerror}") from None
            if attempt % 10 == 9:
                _kill_all(directory)
            time.sleep(0.005)
    return False


def remove_job_cgroup(cgroup: JobCgroup) -> bool:
    """Kill what is left and remove the cgroup; False when a directory stayed busy (~1 s)."""
    removed = True
    for directory in cgroup.unique_dirs():
        if os.path.isdir(directory):
            _kill_all(directory)
            removed = _rmdir(directory) and removed
    return removed
