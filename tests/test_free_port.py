"""devtools.free_tcp_port: the ports the harness gives the proxy, the cluster and pgbouncer."""

from __future__ import annotations

import socket

from pgsentry.devtools.pgcluster import _ephemeral_range, free_tcp_port, port_is_free


def test_ports_are_outside_the_ephemeral_range_and_never_repeat() -> None:
    low, high = _ephemeral_range()
    ports = [free_tcp_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(not low <= p <= high for p in ports), (low, high, ports)
    for port in ports[:5]:  # free when handed out: a listener can take it
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
            sock.listen()


def test_a_port_in_use_is_not_free() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        assert not port_is_free(busy)
    assert port_is_free(busy)
