"""The hardened profile every job container runs with, on any OCI runtime, besides what
each spec already asks (no capabilities, no-new-privileges, an unprivileged user, an init,
limits): the project's own seccomp profile, a read-only root file system with a writable
/tmp in memory, and Docker's default /proc masks (kept by never running privileged).

The seccomp profile (profiles/seccomp.json) is Docker 20.10's default (moby's
profiles/seccomp/default.json, Apache-2.0), made tighter for what an algorithm needs:
the rules that apply only with a capability are gone (job containers have none: mount,
umount2, unshare, setns, bpf, perf_event_open, kcmp, process_vm_*, … stay refused), and
ptrace and io_uring are refused too; every refused call fails with EPERM. keyctl,
add_key, request_key and userfaultfd were never in Docker's list.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

# What the profile refuses that an algorithm might try, each with EPERM: the tests check
# every one fails inside a job.
REFUSED = (
    "ptrace",
    "mount",
    "umount2",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "userfaultfd",
    "perf_event_open",
    "init_module",
    "finit_module",
    "io_uring_setup",
)


@functools.cache
def seccomp_profile(oci_runtime: str = "", *, hardened: bool = True) -> str | None:
    """The profile as Docker's API takes it, the JSON text itself; None: Docker's default.

    `hardened`: the project's profile; else Docker 20.10's default (profiles/
    docker-default.json), sent only under runsc: there clone3 is allowed. Like Docker's,
    the profile answers clone3 with ENOSYS so that glibc falls back to clone (whose flags
    a filter can see), but gVisor's filters answer EPERM whatever errno a rule names, and
    then neither glibc nor node can start a thread (Docker's own default breaks them so
    too). In the sandbox a new namespace is gVisor's own, not the host's."""
    if not hardened and oci_runtime != "runsc":
        return None
    name = "profiles/seccomp.json" if hardened else "profiles/docker-default.json"
    profile = json.loads(resources.files("localcompute.runtime").joinpath(name).read_text())
    allowed = {name for rule in profile["syscalls"] for name in rule["names"]}
    leaked = sorted(allowed.intersection(REFUSED))
    if hardened and leaked:  # a profile edited by hand must still refuse what the docs say
        raise RuntimeError(f"profiles/seccomp.json allows {', '.join(leaked)}")
    if oci_runtime == "runsc":
        rules = [r for r in profile["syscalls"] if r["names"] != ["clone3"]]
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ALLOW"})
        profile["syscalls"] = rules
    return json.dumps(profile, separators=(",", ":"))


def tmpfs_bytes(memory_bytes: int | None) -> int:
    """/tmp as tmpfs: its pages are the container's memory, so what it holds counts in the
    job's memory limit; never larger than that limit (64 MiB for a stage without one)."""
    return memory_bytes if memory_bytes else 64 * 1024 * 1024


def tmpfs_options(memory_bytes: int | None) -> str:
    """Docker's words for the /tmp of a container of `memory_bytes`."""
    size = tmpfs_bytes(memory_bytes)
    return f"rw,nosuid,nodev,size={size},mode=1777"  # any user may write, as /tmp is


# Under gVisor's ptrace platform each process of the algorithm costs the sandbox several
# host tasks (a stub process and the Sentry's threads), all in the container's PIDs
# cgroup: at 512, a shell could not fork 100 sleepers, and the sandbox died (exit 2), the
# "exit 2 instead of 0" once seen with every option on. So a runsc container's PIDs limit
# is this many times [docker] pids_limit; past it the sandbox ends, contained all the same.
GVISOR_TASKS_PER_PROCESS = 8


def pids_limit(base: int, oci_runtime: str) -> int:
    """The PIDs limit of a container under `oci_runtime` for [docker] pids_limit `base`."""
    return base * GVISOR_TASKS_PER_PROCESS if oci_runtime == "runsc" else base
