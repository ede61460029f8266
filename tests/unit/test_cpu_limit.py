"""Capping a process's CPU as a pod's CPU limit does (tests/support/cpu_limit.py, for the replica bench)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support import cpu_limit
from ..support.cpu_limit import cpu_hierarchy, cpu_limit_unavailable, cpu_limited

pytestmark = pytest.mark.skipif(cpu_limit_unavailable() is not None, reason=str(cpu_limit_unavailable()))


@pytest.fixture
def busy_child() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def _group_of(pid: int) -> Path | None:
    """The cgroup made by cpu_limited that ``pid`` is in, if any."""
    root = cpu_hierarchy()
    assert root is not None
    for group in root.glob(f"{cpu_limit.GROUP_PREFIX}*"):
        if str(pid) in (group / "cgroup.procs").read_text().split():
            return group
    return None


def _throttled_periods(group: Path) -> int:
    stat = dict(line.split() for line in (group / "cpu.stat").read_text().splitlines())
    return int(stat["nr_throttled"])


def test_a_capped_process_is_throttled_and_released(busy_child: subprocess.Popen[bytes]) -> None:
    with cpu_limited([busy_child.pid], 0.1):
        group = _group_of(busy_child.pid)
        assert group is not None
        if (group / "cpu.cfs_quota_us").exists():
            assert int((group / "cpu.cfs_quota_us").read_text()) == cpu_limit.PERIOD_US // 10
            assert int((group / "cpu.cfs_period_us").read_text()) == cpu_limit.PERIOD_US
        else:
            assert (group / "cpu.max").read_text().split() == [str(cpu_limit.PERIOD_US // 10), str(cpu_limit.PERIOD_US)]
        # A busy loop with a tenth of a core runs out of its quota in every period: the kernel counts
        # each period it stopped the group in. Wait (boundedly) for a few such periods.
        deadline = time.monotonic() + 10
        while _throttled_periods(group) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _throttled_periods(group) >= 3
    # Back in the root group, and the group is gone.
    assert _group_of(busy_child.pid) is None
    assert not group.exists()


def test_a_process_that_ended_meanwhile_leaves_no_group_behind() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with cpu_limited([child.pid], 0.5):
            group = _group_of(child.pid)
            assert group is not None
            child.kill()
            child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not group.exists()


def test_a_limit_of_no_cores_is_refused() -> None:
    with pytest.raises(ValueError, match="more than 0 cores"), cpu_limited([], 0):
        pass
