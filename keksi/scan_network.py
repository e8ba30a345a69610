"""What the site audit may contact: public addresses only, unless the operator allows some private networks.

A page, a link, a sitemap entry or a redirect could send the scanner to the machine it runs on or to
its network (127.0.0.1, 10.0.0.0/8, the cloud's metadata service at 169.254.169.254). So every host
name is resolved and refused when any of its addresses is loopback, private, link-local or otherwise
not public, unless it lies in a network of KEKSI_SCAN_ALLOW_PRIVATE. Chromium reaches the network only
through `Gate`, a small forward proxy on loopback that checks each connection, redirects and
sub-requests included, and connects to the very address it checked (a name cannot resolve to a public
address for the check and a private one for the connection).
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

HEAD_LIMIT = 64 * 1024  # a request head longer than this is not a browser's
IDLE_SECONDS = 60  # a tunnel without traffic this long is closed
GATE_HEADER = "X-Keksi-Scan-Gate"  # on the gate's own answers: "refused" or "unreachable"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refused(Exception):
    """A host that resolves to an address the scanner may not visit."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(f"{host} resolves to {address}, which is not a public address")
        self.host, self.address = host, address


def networks(value: str) -> tuple[Network, ...]:
    """The networks of a comma-separated list such as `10.1.0.0/16,127.0.0.1` (the setting's parser)."""
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())
    except ValueError as error:
        raise ValueError(f"expected networks such as 10.1.0.0/16 ({error})") from None


def _public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1 is 127.0.0.1
    address = mapped or address
    return address.is_global and not address.is_multicast


@dataclass
class Targets:
    """The scanner's rule for where it may connect: public addresses, and the `allowed` networks."""

    allowed: tuple[Network, ...] = ()
    _cache: dict[tuple[str, int], str] = field(default_factory=dict, repr=False)

    def permits(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        return _public(ip) or any(ip in network for network in self.allowed)

    def address(self, host: str, port: int) -> str:
        """The address to connect to for `host`, after checking every address it resolves to.
        Raises Refused, or OSError when the name does not resolve."""
        if (host, port) not in self._cache:
            found = [info[4][0] for info in socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)]
            refused = next((a for a in found if not self.permits(a)), None)
            if refused is not None:
                raise Refused(host, refused)
            self._cache[(host, port)] = found[0]
        return self._cache[(host, port)]

    def check(self, url: str) -> None:
        """Raise Refused when `url`'s host is not to be visited; a name that does not resolve passes
        (the browser then says it cannot be reached)."""
        parts = urlsplit(url)
        with contextlib.suppress(OSError):
            self.address(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))


# -- the gate Chromium goes through --------------------------------------------------------


def _read_head(conn: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head and len(head) < HEAD_LIMIT:
        chunk = conn.recv(8192)
        if not chunk:
            break
        head += chunk
    return head


def _target(head: bytes) -> tuple[str, int, bytes | None]:
    """(host, port, the head to send upstream) of a proxy request; None to send for a CONNECT tunnel."""
    first, _, rest = head.partition(b"\r\n")
    method, target, version = first.decode("latin-1").split(" ", 2)
    if method == "CONNECT":
        host, _, port = target.rpartition(":")
        return host.strip("[]"), int(port), None
    parts = urlsplit(target)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # One request a connection: a browser may send the next one to another host.
    lines = [line for line in rest.split(b"\r\n") if not line.lower().startswith((b"proxy-connection:",
                                                                                   b"connection:"))]
    upstream = f"{method} {path} {version}\r\n".encode("latin-1") + b"\r\n".join(lines)
    upstream = upstream.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    return parts.hostname or "", parts.port or 80, upstream


def _answer(conn: socket.socket, status: str, why: str) -> None:
    conn.sendall(f"HTTP/1.1 {status}\r\n{GATE_HEADER}: {why}\r\nContent-Type: text/plain\r\n"
                 f"Content-Length: {len(why)}\r\nConnection: close\r\n\r\n{why}".encode("latin-1"))


def _pipe(a: socket.socket, b: socket.socket, both_ways: bool) -> None:
    """Copy bytes until a side closes or nothing moves for IDLE_SECONDS; one way copies b to a only."""
    sources = [a, b] if both_ways else [b]
    while True:
        ready, _, _ = select.select(sources, [], [], IDLE_SECONDS)
        if not ready:
            return
        for source in ready:
            data = source.recv(65536)
            if not data:
                return
            (b if source is a else a).sendall(data)


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        conn = self.request
        conn.settimeout(IDLE_SECONDS)
        with contextlib.suppress(OSError, ValueError):
            head = _read_head(conn)
            host, port, upstream_head = _target(head[:head.find(b"\r\n\r\n") + 4])
            try:
                address = self.server.targets.address(host, port)
            except Refused as refused:
                self.server.refused.append(refused)
                return _answer(conn, "403 Forbidden", "refused")
            except OSError:
                return _answer(conn, "502 Bad Gateway", "unreachable")
            try:
                upstream = socket.create_connection((address, port), timeout=IDLE_SECONDS)
            except OSError:
                return _answer(conn, "502 Bad Gateway", "unreachable")
            with upstream:
                self._forward(conn, upstream, head, upstream_head)

    @staticmethod
    def _forward(conn: socket.socket, upstream: socket.socket, head: bytes, upstream_head: bytes | None) -> None:
        """A tunnel both ways; or one request (head and body) upstream, then its answer back."""
        if upstream_head is None:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            return _pipe(conn, upstream, both_ways=True)
        body = head[head.find(b"\r\n\r\n") + 4:]
        upstream.sendall(upstream_head + body)
        length = _content_length(head)
        while length is not None and len(body) < length:
            chunk = conn.recv(min(65536, length - len(body)))
            if not chunk:
                return
            body += chunk
            upstream.sendall(chunk)
        _pipe(conn, upstream, both_ways=length is None)


def _content_length(head: bytes) -> int | None:
    """The request body's length: 0 without one, None when it is chunked (then copied as it comes)."""
    lines = [line.lower() for line in head.split(b"\r\n")]
    if any(line.startswith(b"transfer-encoding:") for line in lines):
        return None
    found = [int(line.split(b":", 1)[1]) for line in lines if line.startswith(b"content-length:")]
    return found[0] if found else 0


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, targets: Targets) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.targets = targets
        self.refused: list[Refused] = []


class Gate:
    """A forward proxy on a free loopback port for Chromium; `refused` lists what it turned away."""

    def __init__(self, targets: Targets) -> None:
        self.targets = targets
        self.server = _Server(targets)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def refused(self) -> list[Refused]:
        return self.server.refused

    def __enter__(self) -> "Gate":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def chromium_args(gate: Gate) -> list[str]:
    """Chromium's flags that send every connection through `gate`: loopback too (Chromium lets loopback
    bypass a proxy unless told), no QUIC, and WebRTC only through the proxy."""
    return [f"--proxy-server={gate.url}", "--proxy-bypass-list=<-loopback>", "--disable-quic",
            "--force-webrtc-ip-handling-policy=disable_non_proxied_udp"]
