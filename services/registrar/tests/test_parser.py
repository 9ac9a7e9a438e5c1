"""The SIP parser against RFC 4475 torture messages, and a property-based fuzz."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from centralino_registrar.sip.message import (
    Malformed,
    SipMessage,
    parse,
    parse_auth,
    parse_name_addr,
    parse_uri,
    parse_via,
)
from centralino_registrar.sip.transaction import make_response


def wire(text: str, body: str = "") -> bytes:
    """A message as on the wire: CRLF line ends (the RFC prints LF)."""
    head = text.strip("\n").replace("\n", "\r\n")
    return (head + "\r\n\r\n" + body.replace("\n", "\r\n")).encode("utf-8")


SDP = """v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.3
s=-
c=IN IP4 192.0.2.4
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"""

# RFC 4475 3.1.1.1 (wsinv): folding, LWS everywhere, compact and long forms, unknown headers.
WSINV = wire(
    """INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : 150
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33""",
    SDP,
)

# 3.1.1.2 (intmeth): unusual but legal characters in method, URI, branch, tokens.
INTMETH = wire(
    """!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0
Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~
To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy,/;;*@example.com>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_`'~: \ufeff\u5927\u505c\u96fb
Content-Length: 0"""
)

# 3.1.1.3 (esc01) and 3.1.1.5 (esc02): % escaping, and % where it is not an escape.
ESC01 = wire(
    """INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: 0"""
)
ESC02 = wire(
    """RE%47IST%45R sip:registrar.example.com SIP/2.0
To: "%Z%45" <sip:resource@example.com>
From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
C%6Fntact: <sip:alias2@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0"""
)

OPTIONS = """OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.org>;tag=323
Max-Forwards: 70
Call-ID: {cid}
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP {via};branch=z9hG4bKkdjuw
l: 0"""


def options(**changes: str) -> bytes:
    values = {"cid": "opt.1", "via": "host.example.com", **changes}
    return wire(OPTIONS.format(**values))


VALID = {
    "wsinv": WSINV,
    "intmeth": INTMETH,
    "esc01": ESC01,
    "esc02": ESC02,
    # 3.1.1.6 (lwsdisp): no LWS between display name and <.
    "lwsdisp": options().replace(b"From: <sip:caller", b"From: caller<sip:caller"),
    # 3.1.1.10 (semiuri): a semicolon-separated parameter in the user part.
    "semiuri": options().replace(
        b"OPTIONS sip:user@example.com", b"OPTIONS sip:user;par=u%40example.net@example.com"
    ),
    # 3.1.1.11 (transports): Via transports it does not know.
    "transports": options().replace(
        b"Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw",
        b"Via: SIP/2.0/SCTP t3.example.com;branch=z9hG4bKsdfj,"
        b" SIP/2.0/TLS t2.example.com;branch=z9hG4bK3a, SIP/2.0/UNKNOWN t1.example.com;branch=z9hG4bK2",
    ),
    # 3.2.1 (ipv6-good) and 3.2.3 (port-ambiguous): IPv6 references.
    "ipv6": options(via="[2001:db8::9:1]:5070").replace(
        b"OPTIONS sip:user@example.com", b"OPTIONS sip:[2001:db8::10]:5070"
    ),
    "ipv6-port-ambiguous": options(via="[2001:db8::9:255]").replace(
        b"OPTIONS sip:user@example.com", b"OPTIONS sip:[2001:db8::10:5070]"
    ),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_torture_messages_parse(name: str) -> None:
    msg = parse(VALID[name])
    assert isinstance(msg, SipMessage), msg


def test_wsinv_details() -> None:
    msg = parse(WSINV)
    assert isinstance(msg, SipMessage)
    assert msg.method == "INVITE" and msg.cseq() == (9, "INVITE")
    assert msg.get("max-forwards") == "0068"
    assert len(msg.all("via")) == 3
    vias = [parse_via(v) for v in msg.all("via")]
    assert [(v.transport, v.host, v.branch) for v in vias if v] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    to = parse_name_addr(msg.get("to") or "")
    assert to and to.tag == "1918181833n"
    from_ = parse_name_addr(msg.get("from") or "")
    assert from_ and from_.tag == "98asjd8"
    contact = parse_name_addr(msg.get("contact") or "")
    assert contact and contact.params == {"newparam": "newvalue", "secondparam": "", "q": "0.33"}
    assert msg.get("subject") == ""
    assert msg.get("unknownheaderwithunusualvalue") == ";;,,;;,;"
    assert len(msg.body) == 150


def test_compact_forms_and_multiple_contacts() -> None:
    msg = parse(ESC02)
    assert isinstance(msg, SipMessage)
    # C%6Fntact is an unknown header, not a Contact.
    assert len(msg.all("contact")) == 2
    assert (
        msg.get(
            "call-id",
        )
        == "esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf"
    )
    assert parse(ESC01).get("content-type") == "application/sdp"  # type: ignore[union-attr]


def test_ipv6_hosts() -> None:
    uri = parse_uri("sip:[2001:db8::10]:5070;transport=tcp")
    assert uri and uri.host == "[2001:db8::10]" and uri.port == 5070 and uri.transport == "tcp"
    ambiguous = parse_uri("sip:[2001:db8::10:5070]")
    assert ambiguous and ambiguous.port is None
    assert parse_uri("sip:2001:db8::10") is None  # 3.2.2 (ipv6-bad)
    via = parse_via("SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3;rport")
    assert via and via.host == "[2001:db8::9:1]" and via.port == 5070 and "rport" in via.params


INVALID = {
    # 3.1.2.1 (badinv01): extraneous header field separators in Via.
    "badinv01": (options().replace(b"branch=z9hG4bKkdjuw", b"branch=z9hG4bKkdjuw;;,;,,"), 400),
    # 3.1.2.2 (clerr): Content-Length larger than the datagram.
    "clerr": (options().replace(b"l: 0", b"l: 9999") + b"v=0\r\n", 400),
    # 3.1.2.3 (ncl): negative Content-Length.
    "ncl": (options().replace(b"l: 0", b"l: -999"), 400),
    # 3.1.2.4 (scalar02): overlarge CSeq and Max-Forwards.
    "scalar02": (options().replace(b"CSeq: 60", b"CSeq: 36893488147419103232"), 400),
    "scalar02-mf": (options().replace(b"Max-Forwards: 70", b"Max-Forwards: 300"), 400),
    # 3.1.2.6 (quotbal): unterminated quoted display name.
    "quotbal": (
        options().replace(
            b"To: sip:user@example.com", b'To: "Mr. J. User <sip:j.user@example.com>'
        ),
        400,
    ),
    # 3.1.2.7 (ltgtruri): <> around the Request-URI.
    "ltgtruri": (
        options().replace(b"OPTIONS sip:user@example.com", b"OPTIONS <sip:user@example.com>"),
        400,
    ),
    # 3.1.2.8 (lwsruri): LWS inside the Request-URI.
    "lwsruri": (
        options().replace(b"sip:user@example.com SIP", b"sip:user@example.com; lr SIP"),
        400,
    ),
    # 3.1.2.9 (lwsstart): more than one SP between Request-Line elements.
    "lwsstart": (
        options().replace(
            b"OPTIONS sip:user@example.com SIP", b"OPTIONS  sip:user@example.com  SIP"
        ),
        400,
    ),
    # 3.1.2.11 (escruri): escaped headers in the Request-URI.
    "escruri": (
        options().replace(
            b"OPTIONS sip:user@example.com",
            b"OPTIONS sip:user@example.com?Route=%3Csip:example.com%3E",
        ),
        400,
    ),
    # 3.1.2.15 (baddn): non-token characters in an unquoted display name.
    "baddn": (options().replace(b"From: <sip:caller", b"From: Bell, Alexander <sip:caller"), 400),
    # 3.1.2.16 (badvers): unknown protocol version.
    "badvers": (options().replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1), 505),
    # 3.1.2.17 (mismatch01): Request-Line and CSeq methods differ.
    "mismatch01": (options().replace(b"CSeq: 60 OPTIONS", b"CSeq: 60 INVITE"), 400),
    # 3.3.1 (insuf): missing required header fields.
    "insuf": (options().replace(b"Call-ID: opt.1\r\n", b""), 400),
    # 3.3.5 (mult) and 3.3.6 (mcl): several values where one is allowed.
    "mult": (options().replace(b"Call-ID: opt.1", b"Call-ID: opt.1\r\nCall-ID: opt.2"), 400),
    "mcl": (options().replace(b"l: 0", b"l: 0\r\nContent-Length: 3") + b"abc", 400),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_torture_messages_get_the_right_status(name: str) -> None:
    data, status = INVALID[name]
    result = parse(data)
    assert isinstance(result, Malformed), name
    assert result.status == status
    assert result.can_respond
    response = make_response(
        result.message, result.status, "Bad Request", source_ip="192.0.2.1", source_port=5060
    )  # type: ignore[arg-type]
    assert response.encode().startswith(f"SIP/2.0 {status} ".encode())


def test_overlarge_response_code_is_dropped() -> None:
    # 3.1.2.19 (bigcode): nothing to answer.
    result = parse(
        wire(
            "SIP/2.0 4294967301 better not break the receiver\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nl: 0"
        )
    )
    assert isinstance(result, Malformed) and not result.can_respond


def test_contact_uri_with_headers_must_be_enclosed() -> None:
    # 3.1.2.13 (regbadct): the registrar must not take this as a Contact.
    assert parse_name_addr("sip:user@example.com?Route=%3Csip:sip.example.com%3E") is None
    assert parse_name_addr("<sip:user@example.com?Route=%3Csip:sip.example.com%3E>") is not None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_fuzz_bytes_never_raise(data: bytes) -> None:
    result = parse(data)
    assert isinstance(result, SipMessage | Malformed)
    assert isinstance(parse(data, stream=True), SipMessage | Malformed)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(VALID)),
    st.lists(st.tuples(st.integers(0, 2000), st.binary(max_size=8)), max_size=6),
    st.integers(0, 2000),
)
def test_fuzz_mutated_torture_messages_never_raise(
    name: str, inserts: list[tuple[int, bytes]], cut: int
) -> None:
    data = bytearray(VALID[name])
    for at, chunk in inserts:
        at = at % (len(data) + 1)
        data[at : at + len(chunk)] = chunk
    data = data[: max(cut, 1)] if cut % 3 == 0 else data
    result = parse(bytes(data))
    if isinstance(result, Malformed) and result.can_respond:
        assert result.message is not None
        make_response(
            result.message, 400, "Bad Request", source_ip="192.0.2.1", source_port=1
        ).encode()
    elif isinstance(result, SipMessage):
        result.encode()


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_header_values_never_raise(text: str) -> None:
    parse_uri(text)
    parse_name_addr(text)
    parse_via(text)
    parse_auth(text)
