"""Server transactions (RFC 3261 17.2): a retransmission gets the cached final response."""

from __future__ import annotations

import collections
import hashlib
import time
from email.utils import formatdate
from enum import Enum

from .message import SipMessage, parse_name_addr, parse_via

SERVER = "Centralino registrar"
# Timer J (64*T1): how long a non-INVITE server transaction absorbs retransmissions.
TIMER_J = 32.0

TxKey = tuple[str, ...]


class TxState(Enum):
    new = "new"
    proceeding = "proceeding"
    completed = "completed"


def transaction_key(msg: SipMessage) -> TxKey:
    """RFC 3261 17.2.3: branch + sent-by + method; the RFC 2543 fallback otherwise."""
    via = parse_via(msg.get("via") or "")
    method = msg.method or ""
    if method == "ACK":
        method = "INVITE"
    if via and via.branch.startswith("z9hG4bK"):
        return (via.branch, f"{via.host}:{via.port or 5060}", method)
    from_ = parse_name_addr(msg.get("from") or "")
    number, _ = msg.cseq()
    return (
        "2543",
        msg.uri or "",
        from_.tag or "" if from_ else "",
        msg.call_id,
        str(number),
        msg.get("via") or "",
        method,
    )


class Transactions:
    """Recent server transactions and their final responses, kept for Timer J."""

    def __init__(self, ttl: float = TIMER_J) -> None:
        self.ttl = ttl
        self._entries: dict[TxKey, bytes | None] = {}
        self._order: collections.deque[tuple[float, TxKey]] = collections.deque()

    def __len__(self) -> int:
        return len(self._entries)

    def begin(self, key: TxKey) -> tuple[TxState, bytes | None]:
        """Starts a transaction, or says it exists (and its cached final response)."""
        self._purge()
        if key in self._entries:
            cached = self._entries[key]
            return (TxState.completed if cached else TxState.proceeding), cached
        self._entries[key] = None
        self._order.append((time.monotonic() + self.ttl, key))
        return TxState.new, None

    def complete(self, key: TxKey, response: bytes) -> None:
        if key in self._entries:
            self._entries[key] = response

    def _purge(self) -> None:
        now = time.monotonic()
        order = self._order
        while order and order[0][0] <= now:
            _, key = order.popleft()
            self._entries.pop(key, None)


def to_tag(msg: SipMessage) -> str:
    """A To tag that is the same for every response to the same request."""
    from_ = parse_name_addr(msg.get("from") or "")
    seed = f"{msg.call_id}|{from_.tag if from_ else ''}"
    return hashlib.blake2s(seed.encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()


def stamp_via(via_value: str, ip: str, port: int) -> str:
    """Adds received (and fills rport) to the top Via, RFC 3261 18.2.1 and RFC 3581."""
    via = parse_via(via_value)
    if via is None:
        return via_value
    params = dict(via.params)
    if "rport" in params:
        params["rport"] = str(port)
        params["received"] = ip
    elif via.host.strip("[]") != ip:
        params["received"] = ip
    hostport = f"{via.host}:{via.port}" if via.port else via.host
    rendered = "".join(f";{k}={v}" if v != "" else f";{k}" for k, v in params.items())
    return f"SIP/2.0/{via.transport} {hostport}{rendered}"


def make_response(
    req: SipMessage,
    status: int,
    reason: str,
    *,
    source_ip: str,
    source_port: int,
    headers: list[tuple[str, str]] | None = None,
    tag: bool = True,
) -> SipMessage:
    """A response to `req` (Via stamped, To tagged except on 100), RFC 3261 8.2.6."""
    resp = SipMessage(status=status, reason=reason)
    vias = req.all("via")
    for i, via in enumerate(vias):
        resp.headers.append(("via", stamp_via(via, source_ip, source_port) if i == 0 else via))
    to = req.get("to") or ""
    to_addr = parse_name_addr(to)
    if tag and status > 100 and to_addr is not None and to_addr.tag is None:
        to = f"{to};tag={to_tag(req)}"
    # A malformed request may lack some of these: echo what there is.
    for name, value in (
        ("from", req.get("from")),
        ("to", to),
        ("call-id", req.get("call-id")),
        ("cseq", req.get("cseq")),
    ):
        if value:
            resp.headers.append((name, value))
    resp.headers.extend(headers or [])
    resp.headers.append(("server", SERVER))
    return resp


_DATE: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header value, formatted once per second."""
    global _DATE
    now = int(time.time())
    if _DATE[0] != now:
        _DATE = (now, formatdate(now, usegmt=True))
    return _DATE[1]
