"""What a publisher accepts from the network: bounded subscriptions, allowed CURVE clients only.

Subscriptions. libzmq keeps every subscription a peer sends in a trie of one node per byte, in
every mode (XPUB_MANUAL included: its trie of manual subscriptions), ~50 B of memory per byte of
subscription: 2000 subscriptions of 4000 B grew a source by 376 MB. So a publisher refuses any
message over transport.MAX_SUBSCRIPTION_BYTES (512 B: libzmq disconnects that peer before reading
it), and every publisher is an XPUB in manual mode behind a SubscriptionGate: it applies at most
MAX_SUBSCRIPTIONS distinct topics of MAX_SUBSCRIPTION_TOTAL bytes (a topic already applied is
applied again for a new subscriber: that costs libzmq no new node), ignores and counts the rest,
and as soon as SHED_AFTER_BYTES of ignored subscriptions arrived it cuts the connection that sent
the most bytes (tcp: the kernel's count per connection; ipc: every connection, the legitimate ones
reconnect and subscribe again), which frees that connection's part of libzmq's trie. libzmq reads a
connection's subscriptions into its trie on its own schedule, so what one connection can cost before
its cut depends on the machine's load: with 512-B subscriptions, at most ~50 MB for 2000 of them
(measured: 11-51 MB with two trainings running, 376 MB with 4000-B ones before this rule). Frames
keep flowing to everyone else throughout.

CURVE. With keys, a ZAP handler (RFC 27) in the socket's context admits only the client public
keys of the graph (``Security.client_public``): a client with another key pair is refused during
the handshake. Publishing on a non-loopback address without CURVE is warned about once.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import sys
import threading
from collections.abc import Callable

import zmq
import zmq.utils.z85

MAX_SUBSCRIPTIONS = 64  # distinct topics one publisher applies (a graph uses a handful)
MAX_SUBSCRIPTION_TOTAL = 64 * 1024  # their bytes together
SHED_AFTER_BYTES = 64 * 1024  # ignored subscription bytes after which the heaviest connection is cut
DRAIN_AT_MOST = 256  # (un)subscriptions handled per drain() call
_TCPI_BYTES_RECEIVED = 128  # offset of tcpi_bytes_received in Linux's struct tcp_info (kernel >= 4.1)


class SubscriptionGate:
    """The application side of an XPUB_MANUAL socket: call ``drain()`` before each publish (and
    while waiting for subscribers); ``counters`` says what was applied, ignored and cut."""

    def __init__(self, sock: zmq.Socket, *, max_topics: int = MAX_SUBSCRIPTIONS, max_bytes: int = MAX_SUBSCRIPTION_TOTAL,
                 shed_after: int = SHED_AFTER_BYTES, forward: Callable[[bytes], None] | None = None) -> None:
        """``forward``: called with b"\\x01" + topic when a topic is first applied and b"\\x00" + topic when
        its last subscriber left (a forwarder passes them upstream: only bounded, distinct topics)."""
        self.sock, self.max_topics, self.max_bytes, self.shed_after = sock, max_topics, max_bytes, shed_after
        self.forward = forward
        self.topics: dict[bytes, int] = {}  # applied topic -> subscriptions to it
        self.topic_bytes = 0
        self.ignored_since_shed = 0
        self.counters = {"subscriptions": 0, "subscriptions_ignored": 0, "subscription_bytes_ignored": 0, "connections_cut": 0}

    def drain(self, max_messages: int = DRAIN_AT_MOST) -> int:
        """Handles pending (un)subscriptions, at most ``max_messages`` (a flood must not hold up the
        publish that called this); returns how many subscriptions were applied."""
        applied = 0
        for _ in range(max_messages):
            try:
                msg = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            if not msg or msg[0] not in (0, 1):
                continue
            topic = msg[1:]
            if msg[0] == 1:
                applied += self._subscribe(topic)
                if self.ignored_since_shed >= self.shed_after:
                    # cut now, not after the loop: every subscription libzmq hands us has already grown
                    # its trie (~200 KB for 4000 B), and under load the loop ran on for 400+ of them
                    self._shed()
            elif topic in self.topics:
                self.sock.setsockopt(zmq.UNSUBSCRIBE, topic)  # a no-op for a connection that is gone (libzmq did it)
                self.topics[topic] -= 1
                if not self.topics[topic]:
                    del self.topics[topic]
                    self.topic_bytes -= len(topic)
                    if self.forward is not None:
                        self.forward(b"\x00" + topic)
        return applied

    def _subscribe(self, topic: bytes) -> int:
        if topic not in self.topics and (len(self.topics) >= self.max_topics or self.topic_bytes + len(topic) > self.max_bytes):
            self.counters["subscriptions_ignored"] += 1
            self.counters["subscription_bytes_ignored"] += len(topic)
            self.ignored_since_shed += len(topic) + 1
            return 0
        self.sock.setsockopt(zmq.SUBSCRIBE, topic)  # applies to the connection it came from
        if topic not in self.topics:
            self.topic_bytes += len(topic)
            if self.forward is not None:
                self.forward(b"\x01" + topic)
        self.topics[topic] = self.topics.get(topic, 0) + 1
        self.counters["subscriptions"] += 1
        return 1

    def _connections(self) -> dict[int, int | None]:
        """This socket's live connections, found in the process's descriptors (a monitor's events
        race with descriptor reuse: a flood that reconnected on the number of the connection just cut
        went unseen): each socket accepted at this socket's bound endpoint (every gated publisher
        binds) -> the bytes the kernel received on it (tcp), or None (ipc)."""
        endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        if endpoint.startswith("tcp://"):
            host, _, port = endpoint[6:].rpartition(":")
            want: object = (host.strip("[]"), int(port))
        elif endpoint.startswith("ipc://"):
            want = endpoint[6:]
        else:
            return {}
        found: dict[int, int | None] = {}
        try:
            names = os.listdir("/proc/self/fd")
        except OSError:  # no /proc (not Linux): nothing found, nothing cut; the gate still ignores and counts
            return {}
        for name in names:
            try:
                if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                    continue
                with socket.socket(fileno=os.dup(int(name))) as s:
                    s.getpeername()  # raises for the listening socket itself
                    local = s.getsockname()
                    if (local[:2] if isinstance(want, tuple) else local) != want:
                        continue  # another socket's, or the client end of a subscriber in this process
                    tcp = s.family in (socket.AF_INET, socket.AF_INET6)
                    info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256) if tcp else b""
            except (OSError, ValueError):
                continue  # closed meanwhile, not connected, or not an address we can compare
            found[int(name)] = struct.unpack_from("Q", info, _TCPI_BYTES_RECEIVED)[0] if len(info) >= _TCPI_BYTES_RECEIVED + 8 else None
        return found

    def _shed(self) -> None:
        """Cuts the connection that sent the most (tcp; only if it sent at least half the ignored bytes),
        else every connection: libzmq then drops its subscriptions. shutdown() on a duplicate leaves
        libzmq's own descriptor to close."""
        received = self._connections()
        tcp = {fd: n for fd, n in received.items() if n is not None}
        heaviest = max(tcp, key=tcp.get) if tcp else None
        if not received or (heaviest is not None and tcp[heaviest] < self.shed_after // 2):
            # no connection sent that much (the flood's is not accepted yet): look again after another quarter of
            # the budget, not at every subscription (a descriptor scan each would stall the publish that drains)
            self.ignored_since_shed -= self.shed_after // 4
            return
        self.ignored_since_shed = 0
        for fd in [heaviest] if heaviest is not None else list(received):
            try:
                with socket.socket(fileno=os.dup(fd)) as s:
                    s.shutdown(socket.SHUT_RDWR)
                self.counters["connections_cut"] += 1
            except OSError:
                pass

_WARNED: set[str] = set()


def warn_if_exposed(address: str) -> None:
    """One line when a socket binds beyond loopback without CURVE (anyone who can reach it may
    subscribe, or send)."""
    host = address.removeprefix("tcp://").rsplit(":", 1)[0].strip("[]")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False  # an interface or host name: assume it is reachable
    if not loopback and address not in _WARNED:
        _WARNED.add(address)
        print(f"icf-stream: warning: {address} is reachable beyond this machine without encryption or client keys; "
              "use --curve-keys DIR (icf-stream keys) to allow only your clients", file=sys.stderr, flush=True)


class _ZapHandler(threading.Thread):
    """RFC 27 ZAP in a context: CURVE clients whose public key is allowed get 200, others 400.
    Its socket is not tracked by the context, so ``ctx.destroy()`` leaves it to this thread, which
    ends (and closes it) when the context terminates."""

    def __init__(self, ctx: zmq.Context) -> None:
        super().__init__(name="zap", daemon=True)
        self.allowed: set[bytes] = set()
        self.refused = 0
        self.sock = zmq.Socket(ctx, zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("inproc://zeromq.zap.01")

    def run(self) -> None:
        try:
            while True:
                req = self.sock.recv_multipart()
                version, request_id, mechanism = req[0], req[1], req[5] if len(req) > 5 else b""
                ok = mechanism != b"CURVE" or (len(req) > 6 and req[6] in self.allowed)
                self.refused += not ok
                self.sock.send_multipart([version, request_id, b"200" if ok else b"400",
                                          b"OK" if ok else b"client key not allowed", b"", b""])
        except zmq.ZMQError:  # ETERM: the context is ending
            pass
        finally:
            self.sock.close(0)


_ZAP: dict[int, _ZapHandler] = {}
_ZAP_LOCK = threading.Lock()


def allow_clients(ctx: zmq.Context, public_keys: list[bytes]) -> _ZapHandler:
    """Starts (once per context) the ZAP handler and allows these Z85 client keys."""
    with _ZAP_LOCK:
        handler = _ZAP.get(id(ctx))
        if handler is None or not handler.is_alive():
            handler = _ZAP[id(ctx)] = _ZapHandler(ctx)
            handler.start()
        handler.allowed.update(zmq.utils.z85.decode(k) for k in public_keys)
        return handler
