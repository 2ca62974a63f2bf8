"""Sockets and endpoints: every socket the pipeline opens is made here, with its limits.

Rules (see docs/protocol.md): LINGER 0 so closing never hangs on unsent data; send and receive
high-water marks on every socket; small kernel buffers on ipc / tcp links that carry frames so
the HWM (counted in messages) is not undone by megabytes queued in the kernel; a maximum message
size so a hostile peer cannot make us allocate without bound; CURVE encryption on tcp when keys
are configured. Binding is loopback unless the configuration names another host.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import zmq

from stream.wire.protocol import ProtocolError, decode
from stream.wire.subscriptions import SubscriptionGate, allow_clients, warn_if_exposed

# Links of the graph: who binds, which socket types. Producers of frames bind (they are the stable
# end); workers connect (they come and go).
LINKS = ("video", "audio", "jobs", "results", "masks")
# a subscription is a kind prefix; each of its bytes costs ~50 B of libzmq trie (stream/wire/subscriptions.py);
# CURVE handshake commands (~300 B) must fit too
MAX_SUBSCRIPTION_BYTES = 512


@dataclass
class Security:
    """CURVE keys (Z85 bytes) for tcp links. The server key pair belongs to the binding ends; the
    client pair to connecting ends. Without a ZAP handler any client that knows the server's
    public key may connect: CURVE here gives encryption and server authentication."""

    server_public: bytes
    server_secret: bytes
    client_public: bytes
    client_secret: bytes

    @classmethod
    def generate(cls) -> Security:
        if not zmq.has("curve"):
            raise RuntimeError("this libzmq was built without CURVE; run without --curve")
        sp, ss = zmq.curve_keypair()
        cp, cs = zmq.curve_keypair()
        return cls(sp, ss, cp, cs)

    @classmethod
    def from_dir(cls, folder: str) -> Security:
        """Long-lived keys for several machines: ``server.key_secret`` and ``client.key_secret`` in
        ``folder`` (zmq.auth certificate files), created on first use. Copy the folder to every
        machine of the graph (and the client certificate to external subscribers)."""
        import os

        import zmq.auth

        paths = {who: os.path.join(folder, f"{who}.key_secret") for who in ("server", "client")}
        if not all(os.path.isfile(p) for p in paths.values()):
            os.makedirs(folder, exist_ok=True)
            for who in ("server", "client"):
                if not os.path.isfile(paths[who]):
                    zmq.auth.create_certificates(folder, who)
        (sp, ss), (cp, cs) = (zmq.auth.load_certificate(paths[w]) for w in ("server", "client"))
        return cls(sp, ss, cp, cs)

    @classmethod
    def load(cls, folder: str) -> Security:
        """Keys made by ``icf-stream keys`` (never created here: a missing key is a mistake to report)."""
        import zmq.auth

        paths = [os.path.join(folder, f"{who}.key_secret") for who in ("server", "client")]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise RuntimeError(f"no CURVE keys {missing}; make them with: icf-stream keys --out {folder}")
        try:
            (sp, ss), (cp, cs) = (zmq.auth.load_certificate(p) for p in paths)
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"cannot read the CURVE keys in {folder}: {exc}") from exc
        if ss is None or cs is None:
            raise RuntimeError(f"the key files in {folder} hold no secret key; make them with: icf-stream keys --out {folder}")
        return cls(sp, ss, cp, cs)

    def to_dict(self) -> dict[str, str]:
        return {k: getattr(self, k).decode() for k in ("server_public", "server_secret", "client_public", "client_secret")}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Security:
        return cls(**{k: v.encode() for k, v in data.items()})


@dataclass
class Endpoints:
    """Where each link lives: {link: address}. Built once by the pipeline, shared by all stages."""

    addresses: dict[str, str]  # where connecting ends connect
    security: Security | None = None
    bind: dict[str, str] = field(default_factory=dict)  # where binding ends bind, when different (tcp://0.0.0.0:5555)
    hwm: int = 4  # messages per socket direction on frame links
    max_bytes: int = 32 * 1024 * 1024
    kernel_buffer: int = 2 * 1024 * 1024  # SO_SNDBUF / SO_RCVBUF on frame links (ipc / tcp)
    send_timeout_ms: int = 10_000  # every send has a deadline: a blocking send to a dead peer raises zmq.Again
    extra: dict[str, Any] = field(default_factory=dict)
    # Shared by the stages of one run, never published: an end-of-stream message must carry it, so
    # a peer on the network cannot stop the pipeline with a forged EOS. None: not checked.
    token: str | None = None

    def __getitem__(self, link: str) -> str:
        return self.addresses[link]


def make_keys(folder: str, force: bool = False) -> dict[str, str]:
    """CURVE key files for a pipeline and its subscribers (zmq.auth format, secret files 0600):
    server.key / server.key_secret (the binding ends: publish / link sockets), client.key /
    client.key_secret (connecting ends and external subscribers). Returns {file: public key}."""
    import zmq.auth

    if not zmq.has("curve"):
        raise RuntimeError("this libzmq was built without CURVE")
    names = [f"{who}.{ext}" for who in ("server", "client") for ext in ("key", "key_secret")]
    existing = [n for n in names if os.path.exists(os.path.join(folder, n))]
    if existing and not force:
        raise RuntimeError(f"{folder} already holds {existing}; keep them, or replace them with --force "
                           "(every machine and subscriber then needs the new files)")
    os.makedirs(folder, exist_ok=True)
    out = {}
    for who in ("server", "client"):
        public, secret = zmq.auth.create_certificates(folder, who)
        os.chmod(secret, 0o600)
        out[public] = zmq.auth.load_certificate(public)[0].decode()
    return out


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (there is a small race until the binder takes it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def make_endpoints(transport: str, *, host: str = "127.0.0.1", ports: dict[str, int] | None = None,
                   run_dir: str | None = None, tag: str | None = None) -> dict[str, str]:
    """Addresses for the graph's links on one transport (inproc, ipc or tcp)."""
    tag = tag or f"{os.getpid()}-{time.monotonic_ns() % 10**9}"
    if transport == "inproc":
        return {link: f"inproc://icf-{tag}-{link}" for link in LINKS}
    if transport == "ipc":
        base = run_dir or tempfile.mkdtemp(prefix="icf-stream-")
        # ipc paths are limited to ~107 bytes by sockaddr_un; keep them short.
        return {link: f"ipc://{os.path.join(base, link)}.sock" for link in LINKS}
    if transport == "tcp":
        ports = ports or {}
        return {link: f"tcp://{host}:{ports.get(link) or free_tcp_port(host)}" for link in LINKS}
    raise ValueError(f"unknown transport '{transport}': use inproc, ipc or tcp")


def open_socket(ctx: zmq.Context, kind: int, endpoints: Endpoints, link: str, *, bind: bool,
                hwm: int | None = None, frames: bool = True, address: str | None = None,
                identity: bytes | None = None) -> zmq.Socket:
    """One configured socket, bound or connected to ``link`` (or an explicit ``address``)."""
    sock = ctx.socket(kind)
    hwm = endpoints.hwm if hwm is None else hwm
    sock.setsockopt(zmq.LINGER, 0)
    if identity is not None:
        sock.setsockopt(zmq.ROUTING_ID, identity)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.SNDTIMEO, endpoints.send_timeout_ms)
    sock.setsockopt(zmq.RCVHWM, hwm)
    # Hard cap in libzmq (it disconnects a peer that exceeds it, so memory stays bounded); messages
    # between max_bytes and the cap are received, then dropped and counted as oversized.
    sock.setsockopt(zmq.MAXMSGSIZE, 2 * endpoints.max_bytes)
    if kind in (zmq.PUB, zmq.XPUB):
        # all a publisher ever receives is subscriptions and handshakes: 100 subscriptions of
        # 1 MB took a source to 4.9 GB. A peer that sends more is disconnected by libzmq.
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_SUBSCRIPTION_BYTES)
    addr = address or (endpoints.bind.get(link) if bind else None) or endpoints[link]
    if frames and not addr.startswith("inproc://"):
        sock.setsockopt(zmq.SNDBUF, endpoints.kernel_buffer)
        sock.setsockopt(zmq.RCVBUF, endpoints.kernel_buffer)
    if kind == zmq.PUSH:
        # never queue results to a peer that is not connected yet. Not on DEALER: with IMMEDIATE a
        # disconnect drops the pipe with its unread inbound messages (a worker lost its EOS).
        sock.setsockopt(zmq.IMMEDIATE, 1)
    if kind == zmq.ROUTER:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a vanished worker is an error, not a silent drop
    if kind == zmq.XPUB:
        # the application decides which subscriptions apply (SubscriptionGate); every one reaches it
        sock.setsockopt(zmq.XPUB_MANUAL, 1)
    sec = endpoints.security
    if sec is None and bind and addr.startswith("tcp://"):
        warn_if_exposed(addr)
    if sec is not None and addr.startswith("tcp://"):
        if bind:
            allow_clients(ctx, [sec.client_public])  # ZAP: only the client key pair(s) of this graph connect
            sock.curve_server = True
            sock.curve_publickey, sock.curve_secretkey = sec.server_public, sec.server_secret
        else:
            sock.curve_serverkey = sec.server_public
            sock.curve_publickey, sock.curve_secretkey = sec.client_public, sec.client_secret
    try:
        if bind:
            sock.bind(addr)
        else:
            sock.connect(addr)
    except zmq.ZMQError as exc:
        sock.close(0)
        raise RuntimeError(f"cannot {'bind' if bind else 'connect'} {link} socket at {addr}: {exc}") from exc
    return sock


def recv_packet(sock: zmq.Socket, counters: dict[str, int], *, max_bytes: int, kinds: tuple[str, ...] | None = None,
                envelope: int = 0, flags: int = 0):
    """Receives one message and decodes it; a malformed one is counted and returned as None.
    ``envelope`` leading parts (ROUTER identity + delimiter) are returned separately."""
    frames = sock.recv_multipart(flags=flags, copy=False)
    head, body = frames[:envelope], frames[envelope:]
    if sum(len(f.buffer) for f in body) > max_bytes:  # counted apart: a sender with a wrong size setting
        counters["oversized"] = counters.get("oversized", 0) + 1
        return [f.bytes for f in head], None
    try:
        if envelope and (len(head) < envelope or head[-1].bytes != b""):
            raise ProtocolError("bad routing envelope")
        return [f.bytes for f in head], decode(body, max_bytes=max_bytes, kinds=kinds)
    except ProtocolError as exc:
        counters["malformed"] = counters.get("malformed", 0) + 1
        counters["last_error"] = str(exc)[:200]
        return [f.bytes for f in head], None


def wait_subscribers(gate: SubscriptionGate, expected: int, timeout_s: float, abort) -> int:
    """Blocks until ``expected`` subscriptions were applied by an XPUB socket's gate (or time /
    abort runs out), so the first frames are not published to nobody. Returns how many were seen."""
    seen = 0
    deadline = time.monotonic() + timeout_s
    while seen < expected and time.monotonic() < deadline and not abort.is_set():
        if gate.sock.poll(50):
            seen += gate.drain()
    return seen


def close_socket(sock: zmq.Socket | None, abort) -> None:
    """LINGER is 0 on every socket, so closing never hangs on a dead peer. A graceful close (no
    abort) still hands over what was just queued (the end-of-stream message, the last result):
    libzmq would otherwise discard it, and the receiver would wait for it until a timeout."""
    if sock is None or sock.closed:
        return
    sock.close(linger=0 if abort.is_set() else GRACEFUL_LINGER_MS)


GRACEFUL_LINGER_MS = 1000


def stamp() -> int:
    """The one clock: CLOCK_MONOTONIC in ns, comparable between processes of one machine."""
    return time.monotonic_ns()
