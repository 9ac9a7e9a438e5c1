"""SIP messages (RFC 3261 section 7): a tolerant parser that never raises, and a serializer.

`parse()` returns a `SipMessage` or a `Malformed` (with whatever was readable, so a 400
can still be formed); nothing else comes out of it, whatever the bytes.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# RFC 3261 7.3.3 plus the compact forms registered since.
COMPACT = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "u": "allow-events",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
}

# Headers whose values are comma-separated lists (RFC 3261 7.3.1); others are single.
LIST_HEADERS = frozenset(
    {
        "via",
        "contact",
        "route",
        "record-route",
        "path",
        "service-route",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "allow-events",
        "accept",
        "accept-encoding",
        "accept-language",
        "content-encoding",
        "in-reply-to",
    }
)

CANONICAL = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
}

_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_VIA = re.compile(
    r"^\s*SIP\s*/\s*2\.0\s*/\s*([A-Za-z0-9\-]+)\s+(\[[0-9A-Fa-f:.]+\](?::\d+)?|[^;\s\[\]]+)\s*(.*)$",
    re.DOTALL,
)
_SCHEME_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:[^\s<>]+$")
_DISPLAY = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~ \t]*$")
_HOST = re.compile(r"^[A-Za-z0-9\-.]+$")
_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9\-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)\s*(?:,|$)')

# Headers a message may carry only once (RFC 3261 8.1.1).
_SINGLE = frozenset({"from", "to", "call-id", "cseq"})

_NO_LINES: list[str] = []

MAX_MESSAGE = 65535
MAX_CSEQ = 2**31 - 1


@functools.lru_cache(maxsize=1024)
def canonical(name: str) -> str:
    """The conventional spelling of a lower-case header name (for the wire)."""
    return CANONICAL.get(name) or "-".join(p.capitalize() for p in name.split("-"))


# Header names as written -> long lower-case form, or "" when the name is not a token.
# Bounded: a peer inventing names cannot grow it past this.
_NAMES: dict[str, str] = {}
_NAMES_MAX = 4096


def _header_name(raw: str) -> str:
    name = _NAMES.get(raw)
    if name is None:
        lower = raw.strip().lower()
        name = COMPACT.get(lower, lower) if _TOKEN.match(lower or "-") else ""
        if len(_NAMES) < _NAMES_MAX:
            _NAMES[raw] = name
    return name


@dataclass
class SipMessage:
    """A parsed request or response. Header names are kept lower-case, long form."""

    method: str | None = None
    uri: str | None = None
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_request(self) -> bool:
        return self.method is not None

    # The header lines by name, built on first read and rebuilt when `headers` is replaced
    # or grows (call control appends to it); holding the list keeps its identity unique.
    _index: dict[str, list[str]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _index_of: list[tuple[str, str]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _index_len: int = field(default=-1, init=False, repr=False, compare=False)

    def _lines(self, name: str) -> list[str]:
        headers = self.headers
        if self._index_of is not headers or self._index_len != len(headers):
            index: dict[str, list[str]] = {}
            for key, value in headers:
                lines = index.get(key)
                if lines is None:
                    index[key] = [value]
                else:
                    lines.append(value)
            self._index, self._index_of, self._index_len = index, headers, len(headers)
        return self._index.get(name) or _NO_LINES

    def get(self, name: str) -> str | None:
        """The first value of a header (the whole line for a single-valued one)."""
        lines = self._lines(name)
        if not lines:
            return None
        return lines[0] if name not in LIST_HEADERS else split_list(lines[0])[0]

    def all(self, name: str) -> list[str]:
        """Every value of a header, over all its lines, lists split on commas."""
        lines = self._lines(name)
        if name not in LIST_HEADERS:
            return list(lines)
        out: list[str] = []
        for value in lines:
            out.extend(split_list(value))
        return out

    def set(self, name: str, value: str) -> None:
        """Replaces a header (all its lines) with one value."""
        self.remove(name)
        self.headers.append((name, value))

    def remove(self, name: str) -> None:
        self.headers = [(k, v) for k, v in self.headers if k != name]

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        if first:
            self.headers.insert(0, (name, value))
        else:
            self.headers.append((name, value))

    @property
    def call_id(self) -> str:
        return self.get("call-id") or ""

    def cseq(self) -> tuple[int, str]:
        """CSeq number and method; (-1, "") when unreadable."""
        value = self.get("cseq") or ""
        parts = value.split()
        if len(parts) != 2 or not parts[0].isdigit():
            return -1, ""
        return int(parts[0]), parts[1]

    def encode(self) -> bytes:
        """The message on the wire, Content-Length recomputed."""
        if self.method is not None:
            first = f"{self.method} {self.uri} SIP/2.0"
        else:
            first = f"SIP/2.0 {self.status} {self.reason}"
        lines = [first]
        lines.extend(f"{canonical(k)}: {v}" for k, v in self.headers if k != "content-length")
        lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + self.body


@dataclass
class Malformed:
    """Input that is not a usable SIP message; `message` has what could be read."""

    reason: str
    status: int = 400
    message: SipMessage | None = None

    @property
    def can_respond(self) -> bool:
        """A response needs a request (not an ACK) with a Via to send it back along."""
        m = self.message
        return bool(
            m and m.is_request and m.method != "ACK" and parse_via(m.get("via") or "") is not None
        )


def split_list(value: str) -> list[str]:
    """Splits a header value on commas outside quotes and angle brackets."""
    if "," not in value:
        return [value.strip()]
    out: list[str] = []
    depth = 0
    quoted = False
    start = 0
    i = 0
    while i < len(value):
        ch = value[i]
        if quoted:
            if ch == "\\":
                i += 1
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    out.append(value[start:].strip())
    return [v for v in out if v]


def parse(data: bytes, *, stream: bool = False) -> SipMessage | Malformed:
    """Parses one message; never raises. `stream` (TCP): the body is exactly Content-Length."""
    try:
        return _parse(data, stream)
    except Exception as exc:  # the listener must survive any input
        return Malformed(f"unparseable message ({type(exc).__name__})")


def _parse(data: bytes, stream: bool) -> SipMessage | Malformed:
    if len(data) > MAX_MESSAGE:
        return Malformed("message too large", 513)
    data = data.lstrip(b"\r\n")  # RFC 3261 7.5: CRLFs before the start line are ignored
    end = data.find(b"\r\n\r\n")
    sep = 4
    if end < 0:
        end = data.find(b"\n\n")
        sep = 2
    if end < 0:
        head, body = data, b""
        if not stream:
            # A datagram with no blank line: header section without body.
            head = data.rstrip(b"\r\n")
    else:
        head, body = data[:end], data[end + sep :]
    text = head.decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    msg = SipMessage()
    first = lines[0].strip()
    bad = _start_line(msg, first)
    headers = msg.headers
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            # A continuation line (RFC 3261 7.3.1) unfolds into the header before it.
            if headers and line.strip():
                name, value = headers[-1]
                headers[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        raw, colon, value = line.partition(":")
        if not colon:
            if line.strip():
                bad = bad or Malformed(f"bad header line {line[:40]!r}")
            continue
        name = _header_name(raw)
        if not name:
            bad = bad or Malformed(f"bad header line {line[:40]!r}")
            continue
        headers.append((name, value.strip()))
    if bad:
        bad.message = msg
        return bad
    # Content-Length: framing on streams, truncation on datagrams (RFC 3261 18.3).
    lengths = [v for k, v in msg.headers if k == "content-length"]
    if lengths:
        if len(set(lengths)) > 1 or not lengths[0].isdigit() or len(lengths[0]) > 9:
            return Malformed("bad Content-Length", message=msg)
        length = int(lengths[0])
        if length > len(body):
            return Malformed("body shorter than Content-Length", message=msg)
        body = body[:length]
    elif stream:
        return Malformed("Content-Length is required on a stream", message=msg)
    msg.body = body
    return _check(msg)


def _start_line(msg: SipMessage, line: str) -> Malformed | None:
    parts = line.split()
    if not parts:
        return Malformed("empty start line")
    if parts[0].upper().startswith("SIP/"):
        if parts[0].upper() != "SIP/2.0" or len(parts) < 2 or not parts[1].isdigit():
            return Malformed("bad status line")
        status = int(parts[1])
        if not 100 <= status <= 699:
            return Malformed("bad status code")
        msg.status = status
        msg.reason = " ".join(parts[2:])
        return None
    exact = line.split(" ")
    if len(parts) != 3 or len(exact) != 3:
        # RFC 4475 3.1.2.8/3.1.2.9: LWS inside the Request-URI, or more than one SP.
        msg.method = parts[0] if _TOKEN.match(parts[0]) else None
        msg.uri = parts[1] if len(parts) > 1 else ""
        return Malformed("bad request line")
    method, uri, version = parts
    if not _TOKEN.match(method):
        return Malformed("bad method")
    msg.method, msg.uri = method, uri
    if not version.upper().startswith("SIP/"):
        return Malformed("bad request line")
    if version.upper() != "SIP/2.0":
        return Malformed("version not supported", 505)
    if not _SCHEME_URI.match(uri) or "?" in uri:
        # RFC 4475 3.1.2.7 and 3.1.2.11: <> around it, or escaped headers in it.
        return Malformed("bad Request-URI")
    return None


def _check(msg: SipMessage) -> SipMessage | Malformed:
    """The mandatory headers of a request (RFC 3261 8.1.1) are present and readable."""
    first: dict[str, str] = {}
    repeated = ""
    for key, value in msg.headers:
        if key in first:
            if key in _SINGLE and not repeated:
                repeated = key
        else:
            first[key] = value
    for name in ("via", "from", "to", "call-id", "cseq"):
        if not first.get(name) or (name == "via" and not msg.get("via")):
            return Malformed(f"missing {canonical(name)}", message=msg)
    if repeated:
        return Malformed(f"more than one {canonical(repeated)}", message=msg)
    vias = msg.all("via")
    if parse_via(vias[0]) is None:
        return Malformed("bad Via", message=msg)
    if any(parse_via(v) is None for v in vias[1:]):
        msg.headers = [(k, v) for k, v in msg.headers if k != "via"] + [("via", vias[0])]
        return Malformed("bad Via", message=msg)
    number, method = msg.cseq()
    if number < 0 or number > MAX_CSEQ:
        return Malformed("bad CSeq", message=msg)
    if msg.is_request:
        if method != msg.method and not (msg.method == "ACK" and method == "INVITE"):
            return Malformed("CSeq method does not match the request", message=msg)
        uri = msg.uri or ""
        if uri.lower().startswith(("sip:", "sips:")) and parse_uri(uri) is None:
            return Malformed("bad Request-URI", message=msg)
        if parse_name_addr(first["to"]) is None:
            return Malformed("bad To", message=msg)
        if parse_name_addr(first["from"]) is None:
            return Malformed("bad From", message=msg)
        max_forwards = first.get("max-forwards")
        if max_forwards is not None and (not max_forwards.isdigit() or int(max_forwards) > 255):
            return Malformed("bad Max-Forwards", message=msg)
        expires = first.get("expires")
        if expires is not None and not expires.isdigit():
            return Malformed("bad Expires", message=msg)
    return msg


# -- header values -------------------------------------------------------------


def parse_params(text: str) -> dict[str, str]:
    """`;a=b;c` into {"a": "b", "c": ""}; names lower-case, quotes kept off."""
    params: dict[str, str] = {}
    for part in _split_outside_quotes(text, ";"):
        part = part.strip()
        if not part:
            continue
        name, _, value = part.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        params[name.strip().lower()] = value
    return params


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    if '"' not in text:
        return text.split(sep)
    out: list[str] = []
    buf: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    out.append("".join(buf))
    return out


@dataclass(frozen=True)
class SipUri:
    scheme: str
    user: str | None
    host: str
    port: int | None
    params: Mapping[str, str]
    headers: str = ""

    @property
    def transport(self) -> str:
        return self.params.get("transport", "udp").lower()

    def hostport(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params.items())
        return f"{self.scheme}:{user}{self.hostport()}{params}" + (
            f"?{self.headers}" if self.headers else ""
        )


def _host_port(text: str) -> tuple[str, int | None] | None:
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            return None
        host = text[: close + 1]
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return None
        rest = text[close + 1 :]
        if not rest:
            return host.lower(), None
        if not rest.startswith(":"):
            return None
        port_text = rest[1:]
    else:
        host, sep, port_text = text.partition(":")
        if not host or not _HOST.match(host) or (sep and not port_text):
            return None
        if not port_text:
            return host.lower(), None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return host.lower(), int(port_text)


@functools.lru_cache(maxsize=8192)
def parse_uri(text: str) -> SipUri | None:
    """A sip:/sips: URI, or None when it is not one (IPv6 hosts in brackets).

    Cached (a message's URIs are read several times on its way through): the result is
    shared, so its params are read-only."""
    scheme, colon, rest = text.strip().partition(":")
    scheme = scheme.lower()
    if not colon or scheme not in ("sip", "sips") or not rest or " " in rest:
        return None
    rest, _, headers = rest.partition("?")
    user: str | None = None
    at = rest.find("@")
    if at >= 0:
        user = rest[:at]
        rest = rest[at + 1 :]
        user = user.partition(":")[0]  # a password in a URI is ignored (deprecated)
        if not user:
            return None
    hostport, _, params = rest.partition(";")
    hp = _host_port(hostport)
    if hp is None:
        return None
    return SipUri(scheme, user, hp[0], hp[1], MappingProxyType(parse_params(params)), headers)


@dataclass(frozen=True)
class NameAddr:
    display: str
    uri: str
    params: Mapping[str, str]

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")


@functools.lru_cache(maxsize=8192)
def parse_name_addr(text: str) -> NameAddr | None:
    """`"Name" <uri>;params` or `uri;params` (params then belong to the header).

    Cached like parse_uri: params are read-only."""
    text = text.strip()
    if not text:
        return None
    lt = -1
    if text.startswith('"'):
        close = 1
        while close < len(text):
            if text[close] == "\\":
                close += 2
                continue
            if text[close] == '"':
                break
            close += 1
        if close >= len(text):
            return None
        display = text[1:close]
        lt = text.find("<", close)
        if lt < 0:
            return None
    else:
        lt = text.find("<")
        display = text[:lt].strip() if lt >= 0 else ""
        if not _DISPLAY.match(display):
            return None  # RFC 4475 3.1.2.15: an unquoted display name is tokens only
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            return None
        uri = text[lt + 1 : gt].strip()
        params = parse_params(text[gt + 1 :].lstrip().removeprefix(";"))
    else:
        uri, _, rest = text.partition(";")
        params = parse_params(rest)
        uri = uri.strip()
        if "?" in uri or "," in uri:
            return None  # RFC 4475 3.1.2.13: such a URI must be enclosed in <>
    if ":" not in uri or " " in uri:
        return None
    return NameAddr(display, uri, MappingProxyType(params))


@dataclass(frozen=True)
class Via:
    transport: str
    host: str
    port: int | None
    params: Mapping[str, str]

    @property
    def branch(self) -> str:
        return self.params.get("branch", "")


@functools.lru_cache(maxsize=8192)
def parse_via(text: str) -> Via | None:
    """One Via value: `SIP/2.0/UDP host:port;branch=...;rport` (cached, params read-only)."""
    m = _VIA.match(text)
    if not m:
        return None
    hp = _host_port(m.group(2))
    if hp is None:
        return None
    params = parse_params(m.group(3).strip().removeprefix(";"))
    return Via(m.group(1).upper(), hp[0], hp[1], MappingProxyType(params))


def parse_auth(text: str) -> tuple[str, dict[str, str]] | None:
    """`Digest k=v, k="v"` into ("digest", {k: v}); None when unreadable."""
    scheme, _, rest = text.strip().partition(" ")
    if not scheme:
        return None
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _AUTH_PARAM.match(rest, pos)
        if not m:
            return None
        value = m.group(2)
        if value.startswith('"'):
            value = value[1:-1]
            if "\\" in value:
                value = re.sub(r"\\(.)", r"\1", value)
        params[m.group(1).lower()] = value
        pos = m.end()
    return scheme.lower(), params
