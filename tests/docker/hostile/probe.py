"""Runs inside a job (python3): everything an algorithm might try against the wall around
it that does not end the job, each recorded as what happened. Prints one JSON object.

- syscalls the hardened profile refuses, straight through libc's syscall(2), with their
  errno (x86_64 numbers: the only arch the tests run on);
- the kernel it sees (uname, /proc/version, dmesg), /proc/kallsyms;
- writes: to its inputs, the root file system, /tmp;
- a raw socket, and a connection out (no network: both refused);
- a symlink out of its outputs, to a file of the host.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import socket
import subprocess
from collections.abc import Callable

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

SYSCALLS: dict[str, tuple[int, tuple[int | bytes, ...]]] = {
    "ptrace": (101, (0, 0, 0, 0)),  # PTRACE_TRACEME
    "mount": (165, (b"none", b"/tmp", b"tmpfs", 0, 0)),
    "umount2": (166, (b"/tmp", 0)),
    "unshare": (272, (0x10000000,)),  # CLONE_NEWUSER
    "setns": (308, (0, 0)),
    "keyctl": (250, (0, -3, 0)),  # KEYCTL_GET_KEYRING_ID of the session keyring
    "add_key": (248, (b"user", b"x", b"y", 1, -3)),
    "request_key": (249, (b"user", b"x", 0, 0)),
    "bpf": (321, (5, 0, 0)),  # BPF_PROG_LOAD, no attributes
    "userfaultfd": (323, (0,)),
    "perf_event_open": (298, (0, 0, -1, -1, 0)),
    "init_module": (175, (0, 0, b"")),
    "finit_module": (313, (-1, b"", 0)),
    "io_uring_setup": (425, (1, 0)),
}


def syscall(number: int, *args: int | bytes) -> str:
    converted = [ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a) for a in args]
    result = libc.syscall(ctypes.c_long(number), *converted)
    return "ok" if result >= 0 else errno.errorcode.get(ctypes.get_errno(), "?")


def attempt(action: Callable[[], object]) -> str:
    try:
        action()
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, str(e))
    return "ok"


def read(path: str, size: int = 200) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read(size)
    except OSError as e:
        return f"error {errno.errorcode.get(e.errno or 0, e)}"


def write(path: str) -> str:
    def action() -> None:
        with open(path, "w") as f:
            f.write("x")

    return attempt(action)


def dmesg() -> dict[str, object]:
    done = subprocess.run(["dmesg"], capture_output=True, text=True)
    return {"code": done.returncode, "head": (done.stdout or done.stderr)[:200]}


def connect_out() -> None:
    with socket.create_connection(("1.1.1.1", 80), timeout=2):
        pass


def raw_socket() -> None:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()


outputs = os.environ["OUTPUTS"]
os.symlink("/etc/hostname", os.path.join(outputs, "host-hostname"))
report = {
    "syscalls": {name: syscall(number, *args) for name, (number, args) in SYSCALLS.items()},
    "kernel": platform.release(),
    "version": read("/proc/version"),
    "dmesg": dmesg(),
    "kallsyms": read("/proc/kallsyms", 64),
    "write_inputs": write(os.path.join(os.environ["INPUTS"], "x")),
    "write_root": write("/probe"),
    "write_tmp": write("/tmp/probe"),
    "home": os.environ.get("HOME"),
    "raw_socket": attempt(raw_socket),
    "connect_out": attempt(connect_out),
    "interfaces": sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else [],
    "uid": os.getuid(),
}
with open(os.path.join(outputs, "probe.json"), "w") as f:
    json.dump(report, f)
print(json.dumps(report))
