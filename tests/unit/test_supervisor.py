"""The workers' listening sockets: one per worker on one port, connections spread over them."""

from __future__ import annotations

import contextlib
import select
import socket

from twisted.trial.unittest import SynchronousTestCase

from squad.runtime.supervisor import bind_listening_socket, bind_listening_sockets


def _accept_all(listeners: list[socket.socket], expected: int) -> list[int]:
    """Accept until ``expected`` connections arrived; how many each listener got."""
    counts = [0] * len(listeners)
    accepted: list[socket.socket] = []
    try:
        while sum(counts) < expected:
            ready, _, _ = select.select(listeners, [], [], 5.0)
            if not ready:
                raise AssertionError(f"only {sum(counts)} of {expected} connections arrived")
            for listener in ready:
                with contextlib.suppress(BlockingIOError):
                    connection, _ = listener.accept()
                    accepted.append(connection)
                    counts[listeners.index(listener)] += 1
    finally:
        for connection in accepted:
            connection.close()
    return counts


class ListeningSocketsTests(SynchronousTestCase):
    def listeners(self, port: str, count: int) -> list[socket.socket]:
        sockets = bind_listening_sockets(port, count)
        for listener in sockets:
            self.addCleanup(listener.close)
        return sockets

    def test_one_port_for_every_worker(self) -> None:
        """Port 0 picks one free port, and every worker's socket listens on it."""
        sockets = self.listeners("tcp:0:interface=127.0.0.1", 3)
        self.assertEqual(len(sockets), 3)
        ports = {listener.getsockname() for listener in sockets}
        self.assertEqual(len(ports), 1, ports)
        self.assertNotEqual(sockets[0].getsockname()[1], 0)

    def test_connections_are_spread_over_the_workers(self) -> None:
        """Connections opened at once reach every worker's socket, not the first one only
        (the kernel spreads them by the client's address and port)."""
        sockets = self.listeners("tcp:0:interface=127.0.0.1", 2)
        address = sockets[0].getsockname()
        clients = []
        try:
            for _ in range(40):
                clients.append(socket.create_connection(address))
            counts = _accept_all(sockets, 40)
        finally:
            for client in clients:
                client.close()
        self.assertEqual(sum(counts), 40)
        self.assertTrue(all(count > 0 for count in counts), counts)

    def test_a_port_in_use_is_refused(self) -> None:
        """A port something else listens on is refused, also when that is another squad's
        SO_REUSEPORT group, which would otherwise silently share its traffic with us."""
        plain = bind_listening_socket("tcp:0:interface=127.0.0.1")
        self.addCleanup(plain.close)
        with self.assertRaises(OSError):
            bind_listening_sockets(f"tcp:{plain.getsockname()[1]}:interface=127.0.0.1", 2)
        group = self.listeners("tcp:0:interface=127.0.0.1", 2)
        with self.assertRaises(OSError):
            bind_listening_sockets(f"tcp:{group[0].getsockname()[1]}:interface=127.0.0.1", 2)

    def test_only_tcp_endpoints(self) -> None:
        """Several workers need a tcp: endpoint; anything else is a clear ValueError."""
        with self.assertRaises(ValueError) as raised:
            bind_listening_sockets("unix:/tmp/squad.sock", 2)
        self.assertIn("tcp:", str(raised.exception))
