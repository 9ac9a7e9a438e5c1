"""SIP over UDP and TCP (RFC 3261 section 18) on asyncio; TCP framed by Content-Length."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

from .message import Malformed, SipMessage, parse

log = logging.getLogger("centralino.registrar.sip")

MAX_HEADERS = 65536
_CONTENT_LENGTH = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d{1,9})[ \t]*\r?$")


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from: the address a reply (or a later request) goes back to."""

    transport: str
    ip: str
    port: int
    connection_id: int | None = None


Handler = Callable[[SipMessage | Malformed, Source], None]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if not data.strip(b"\r\n"):
            return  # CRLF keep-alives are ignored on UDP (RFC 5626 uses STUN there)
        try:
            self.handler(parse(data), Source("udp", str(addr[0]), int(addr[1])))
        except Exception:
            log.exception("sip: handler failed on a datagram from %s", addr[0])

    def error_received(self, exc: Exception) -> None:
        log.debug("sip: udp error %s", exc)


class SipTransport:
    """The UDP socket and TCP listener of the SIP edge."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self._udp: _Udp | None = None
        self._tcp: asyncio.Server | None = None
        self._ids = itertools.count(1)
        self.connections: dict[int, asyncio.StreamWriter] = {}

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind((host, port))
        _, protocol = await loop.create_datagram_endpoint(lambda: _Udp(self.handler), sock=sock)
        self._udp = protocol
        self._tcp = await asyncio.start_server(self._serve_tcp, host, port, reuse_address=True)
        log.info("sip: listening on %s:%d (udp, tcp)", host, port)

    async def stop(self) -> None:
        if self._udp and self._udp.transport:
            self._udp.transport.close()
        if self._tcp:
            self._tcp.close()
            for writer in list(self.connections.values()):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 2)
        self.connections.clear()

    def send(
        self, data: bytes, transport: str, ip: str, port: int, connection_id: int | None = None
    ) -> bool:
        """Sends bytes; over TCP only on an open connection (False when there is none)."""
        if transport == "udp":
            if self._udp is None or self._udp.transport is None:
                return False
            self._udp.transport.sendto(data, (ip, port))
            return True
        writer = self.connections.get(connection_id or -1)
        if writer is None or writer.is_closing():
            return False
        writer.write(data)
        return True

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cid = next(self._ids)
        peer = writer.get_extra_info("peername") or ("?", 0)
        source = Source("tcp", str(peer[0]), int(peer[1]), cid)
        self.connections[cid] = writer
        buf = b""
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buf += chunk
                rest = self._frames(buf, source, writer)
                if rest is None:
                    break
                buf = rest
        except (ConnectionError, OSError):
            pass
        finally:
            self.connections.pop(cid, None)
            writer.close()

    def _frames(self, buf: bytes, source: Source, writer: asyncio.StreamWriter) -> bytes | None:
        """Takes every whole message off the buffer; None when the stream cannot be framed."""
        while buf:
            if buf.startswith(b"\r\n\r\n"):
                writer.write(b"\r\n")  # RFC 5626 keep-alive: CRLFCRLF ping, CRLF pong
                buf = buf[4:]
                continue
            if buf.startswith(b"\r\n"):
                if len(buf) < 4 and b"\r\n\r\n".startswith(buf):
                    return buf
                buf = buf[2:]
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return buf if len(buf) <= MAX_HEADERS else None
            m = _CONTENT_LENGTH.search(buf[:end])
            if m is None:
                # Without Content-Length a stream cannot be framed: answer and close.
                self.handler(parse(buf[: end + 4], stream=True), source)
                return None
            total = end + 4 + int(m.group(1))
            if total > MAX_HEADERS * 2:
                return None
            if len(buf) < total:
                return buf
            frame, buf = buf[:total], buf[total:]
            try:
                self.handler(parse(frame, stream=True), source)
            except Exception:
                log.exception("sip: handler failed on a TCP message from %s", source.ip)
        return buf
