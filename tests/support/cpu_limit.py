"""Capping a process's CPU the way a Kubernetes CPU limit does: a CFS quota in a cgroup of its own.

A pod with ``limits.cpu: 500m`` runs in a cgroup whose ``cpu.cfs_quota_us`` is half its
``cpu.cfs_period_us``; the kernel stops the pod's threads for the rest of a period once they have
used their share. :func:`cpu_limited` does the same to running processes, one cgroup each, and puts
them back in the root cgroup when it ends. It needs root and a writable cgroup ``cpu`` controller
(v1, or v2 with ``cpu`` enabled at the root); :func:`cpu_limit_unavailable` says why not, if not.

The period is the kubelet's default, 100 ms. A capped process that used its share early in a period
stalls for the rest of it, so its latency tail is long (hundreds of milliseconds at 64 clients; a
10 ms period was tried and made no difference to it): capped runs measure throughput, not latency.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["GROUP_PREFIX", "PERIOD_US", "cpu_hierarchy", "cpu_limit_unavailable", "cpu_limited"]

PERIOD_US = 100_000
GROUP_PREFIX = "kwbench-"  # the name of every cgroup made here starts with it
_V1 = Path("/sys/fs/cgroup/cpu")
_V2 = Path("/sys/fs/cgroup")


def cpu_hierarchy() -> Path | None:
    """Where cgroups with a CPU quota are made: v1's ``cpu`` hierarchy, or v2's root when ``cpu`` is
    enabled there; None when neither is."""
    if (_V1 / "cpu.cfs_quota_us").exists():
        return _V1
    with contextlib.suppress(OSError):
        if "cpu" in (_V2 / "cgroup.subtree_control").read_text().split():
            return _V2
    return None


def cpu_limit_unavailable() -> str | None:
    """None when :func:`cpu_limited` can run here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "capping a process's CPU needs root (a cgroup of its own)"
    root = cpu_hierarchy()
    if root is None:
        return "no cgroup cpu controller (v1 at /sys/fs/cgroup/cpu, or v2 with cpu enabled)"
    return None if os.access(root, os.W_OK) else f"{root} is not writable"


@contextlib.contextmanager
def cpu_limited(pids: list[int], cores: float) -> Iterator[None]:
    """Each of ``pids`` (threads included) limited to ``cores`` of CPU while the block runs."""
    reason = cpu_limit_unavailable()
    if reason is not None:
        raise RuntimeError(reason)
    if cores <= 0:
        raise ValueError("a CPU limit must be more than 0 cores")
    root = cpu_hierarchy()
    assert root is not None  # checked by cpu_limit_unavailable
    v1 = root == _V1
    quota = max(1000, round(cores * PERIOD_US))  # the kernel's floor is 1 ms
    made: list[Path] = []
    try:
        for pid in pids:
            group = root / f"{GROUP_PREFIX}{uuid.uuid4().hex[:12]}"
            group.mkdir()
            made.append(group)
            if v1:
                (group / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (group / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                (group / "cpu.max").write_text(f"{quota} {PERIOD_US}")
            (group / "cgroup.procs").write_text(str(pid))
        yield
    finally:
        for group in made:
            # Back to the root group (a process that ended has nothing to move), then the group goes.
            with contextlib.suppress(OSError):
                for line in (group / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (root / "cgroup.procs").write_text(line)
            with contextlib.suppress(OSError):
                group.rmdir()
