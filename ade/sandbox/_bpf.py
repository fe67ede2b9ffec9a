"""The seccomp filter, assembled by hand as classic BPF and loaded with seccomp(2).

Why not libseccomp (pyseccomp): importing it costs ~15 ms per job (ctypes.util.find_library
runs ``ldconfig -p``), half the whole sandbox budget, and the filter we need is small and fixed:
an architecture check, a list of syscalls denied with EPERM, and two argument checks. The
syscall numbers below were taken from libseccomp's tables for each architecture.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

__all__ = ["DENIED_SYSCALLS", "build_filter", "load_filter", "supported_arch"]

# Kernel attack surface a spreadsheet job never needs: io_uring (its submitted operations
# bypass seccomp), ptrace and process_vm_* (read other processes), the mount/namespace family
# (could undo the other layers), bpf, kexec, modules, keyrings, open_by_handle_at (the classic
# container escape), syslog.
DENIED_SYSCALLS: tuple[str, ...] = (
    "io_uring_setup", "io_uring_enter", "io_uring_register", "ptrace", "process_vm_readv",
    "process_vm_writev", "pidfd_getfd", "mount", "umount2", "pivot_root", "chroot", "unshare",
    "setns", "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    "mount_setattr", "bpf", "perf_event_open", "userfaultfd", "kexec_load", "kexec_file_load",
    "reboot", "init_module", "finit_module", "delete_module", "swapon", "swapoff", "acct",
    "quotactl", "keyctl", "add_key", "request_key", "name_to_handle_at", "open_by_handle_at",
    "syslog",
)  # fmt: skip

_X86_64 = {
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "ptrace": 101,
    "process_vm_readv": 310, "process_vm_writev": 311, "pidfd_getfd": 438, "mount": 165,
    "umount2": 166, "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "mount_setattr": 442, "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
    "kexec_load": 246, "kexec_file_load": 320, "reboot": 169, "init_module": 175,
    "finit_module": 313, "delete_module": 176, "swapon": 167, "swapoff": 168, "acct": 163,
    "quotactl": 179, "keyctl": 250, "add_key": 248, "request_key": 249,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "syslog": 103, "clone": 56,
    "clone3": 435, "socket": 41, "seccomp": 317,
}  # fmt: skip
_AARCH64 = {
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "ptrace": 117,
    "process_vm_readv": 270, "process_vm_writev": 271, "pidfd_getfd": 438, "mount": 40,
    "umount2": 39, "pivot_root": 41, "chroot": 51, "unshare": 97, "setns": 268,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
    "fspick": 433, "mount_setattr": 442, "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
    "kexec_load": 104, "kexec_file_load": 294, "reboot": 142, "init_module": 105,
    "finit_module": 273, "delete_module": 106, "swapon": 224, "swapoff": 225, "acct": 89,
    "quotactl": 60, "keyctl": 219, "add_key": 217, "request_key": 218,
    "name_to_handle_at": 264, "open_by_handle_at": 265, "syslog": 116, "clone": 220,
    "clone3": 435, "socket": 198, "seccomp": 277,
}  # fmt: skip
# machine -> (AUDIT_ARCH_*, syscall table, x32 bit to reject)
_ARCHES = {
    "x86_64": (0xC000003E, _X86_64, 0x40000000),
    "aarch64": (0xC00000B7, _AARCH64, None),
}

# BPF opcodes
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET = 0x06  # BPF_RET | BPF_K

_RET_KILL_PROCESS = 0x80000000
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000

_OFF_NR, _OFF_ARCH, _OFF_ARG0 = 0, 4, 16  # struct seccomp_data; arg0 low word (little endian)
_CLONE_NAMESPACES = 0x7E020000  # NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


def supported_arch() -> str | None:
    machine = platform.machine()
    return machine if machine in _ARCHES else None


def build_filter(*, network: bool) -> bytes:
    """The filter program as packed ``struct sock_filter`` entries."""
    machine = supported_arch()
    if machine is None:
        raise OSError(errno.ENOSYS, f"no seccomp syscall table for {platform.machine()}")
    audit_arch, table, x32_bit = _ARCHES[machine]
    eperm = _RET_ERRNO | errno.EPERM
    prog: list[tuple[int, int, int, int]] = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        # Another ABI (i386's socketcall, say) would dodge every number below: kill.
        (_JEQ, 1, 0, audit_arch),
        (_RET, 0, 0, _RET_KILL_PROCESS),
        (_LD_W_ABS, 0, 0, _OFF_NR),
    ]
    if x32_bit is not None:
        prog += [(_JGE, 0, 1, x32_bit), (_RET, 0, 0, _RET_KILL_PROCESS)]
    for name in DENIED_SYSCALLS:
        prog += [(_JEQ, 0, 1, table[name]), (_RET, 0, 0, eperm)]
    # clone3 passes its flags in memory BPF cannot read: ENOSYS makes glibc fall back to clone.
    prog += [(_JEQ, 0, 1, table["clone3"]), (_RET, 0, 0, _RET_ERRNO | errno.ENOSYS)]
    # clone with any namespace flag: EPERM; plain fork/thread creation passes.
    prog += [
        (_JEQ, 0, 4, table["clone"]),
        (_LD_W_ABS, 0, 0, _OFF_ARG0),
        (_JSET, 0, 1, _CLONE_NAMESPACES),
        (_RET, 0, 0, eperm),
        (_RET, 0, 0, _RET_ALLOW),
    ]
    if not network:
        # socket() of every family, AF_UNIX included: a named unix socket is network too (a
        # local PostgreSQL or MySQL listens on a world-writable one, and Landlock does not
        # govern connect() on it). socketpair() stays: it only makes a private, connected pair
        # (asyncio's self-pipe, multiprocessing.Pipe). Covers _socket, ctypes and children.
        prog += [(_JEQ, 0, 1, table["socket"]), (_RET, 0, 0, _RET_ERRNO | errno.EACCES)]
    prog.append((_RET, 0, 0, _RET_ALLOW))
    return b"".join(struct.pack("HBBI", *insn) for insn in prog)


class _Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_SECCOMP_SET_MODE_FILTER = 1
_SECCOMP_FILTER_FLAG_TSYNC = 1


def load_filter(program: bytes) -> None:
    """Install ``program`` on every thread of this process (TSYNC). Needs no_new_privs."""
    machine = supported_arch()
    if machine is None:
        raise OSError(errno.ENOSYS, f"no seccomp syscall table for {platform.machine()}")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _Fprog(len(program) // 8, ctypes.addressof(buffer))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    nr = _ARCHES[machine][1]["seccomp"]
    result = libc.syscall(
        ctypes.c_long(nr),
        ctypes.c_uint(_SECCOMP_SET_MODE_FILTER),
        ctypes.c_uint(_SECCOMP_FILTER_FLAG_TSYNC),
        ctypes.byref(fprog),
    )
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp(SET_MODE_FILTER): {errno.errorcode.get(err, err)}")
