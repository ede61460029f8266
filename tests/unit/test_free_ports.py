"""The ports tests and benches hand to the processes they start (tests/support/procs.py)."""

from __future__ import annotations

import socket

from ..support.procs import _bindable, _ephemeral_ports, free_port, free_port_run


def test_ports_come_from_outside_the_ephemeral_range() -> None:
    # Inside it, an outgoing connection may take the port as its source before the process binds it.
    low, high = _ephemeral_ports()
    for _ in range(50):
        port = free_port()
        assert not low <= port <= high


def test_a_run_of_ports_is_free_and_none_is_handed_out_twice() -> None:
    seen: set[int] = set()
    for _ in range(20):
        first = free_port_run(3)
        run = set(range(first, first + 3))
        assert not run & seen
        seen |= run
        for port in run:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port))


def test_a_port_anyone_listens_on_is_not_free() -> None:
    # The probe binds every address: a listener on loopback alone (as the services run) is seen too.
    port = free_port()
    assert _bindable(port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        assert not _bindable(port)
