"""Call control: a record-routing stateful proxy (RFC 3261 section 16) for INVITE dialogs.

An INVITE is challenged (407) and authenticated, routing decides where it goes
(POST /v1/route), rating whether and how long it may last (POST /v1/authorize); the
proxy forks to every registered contact of the target, relays responses, cancels the
other branches on the first 2xx, stays in the dialog (Record-Route) and ends it at the
prepaid limit. call.started / call.answered / call.ended go through the outbox.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client import Counter
from sqlalchemy import Executable, Table, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from centralino_proto.bus import Outbox
from centralino_proto.events import (
    CallAnswered,
    CallClass,
    CallEnded,
    CallStarted,
    Direction,
    Disposition,
)
from centralino_proto.tenancy import Tenant
from centralino_proto.web import Problem

from .config import Settings
from .directory import Directory
from .location import Change, Location
from .models import DialogRow
from .originate import Originator
from .registrar import Registrar, Reply
from .sip.message import SipMessage, parse, parse_name_addr, parse_uri, parse_via
from .sip.transaction import Transactions, make_response, transaction_key
from .sip.transport import SipTransport, Source

log = logging.getLogger("centralino.registrar.calls")

CALLS = Counter("centralino_calls_total", "Calls by outcome", ["disposition"])

# Classes rating is not asked about: free inside the platform, or always allowed.
UNRATED = {CallClass.internal, CallClass.emergency}
LOCAL_ACTIONS = {"extension", "inter_company", "on_net"}

Headers = Callable[[], Awaitable[dict[str, str]]]
DIALOG: Table = DialogRow.__table__  # type: ignore[attr-defined]
Destination = tuple[str, str, int, int | None]  # transport, ip, port, connection


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Branch:
    """One forked INVITE (a client transaction of the proxy)."""

    branch: str
    request: SipMessage
    destination: Destination
    status: int = 0
    retransmit: asyncio.Task[None] | None = None


@dataclass
class Call:
    call_id: str
    tenant_id: uuid.UUID
    extension: str
    caller: str
    callee: str
    call_class: CallClass
    direction: Direction
    invite: SipMessage
    source: Source
    started_at: datetime
    forwarded_from: str | None = None
    # Rating's limit for a billable call (prepaid credit); None for an unrated one.
    max_seconds: int | None = None
    # Every call ends at the latest after this long, rated or not: a phone that vanished
    # mid-call never sends its BYE (SIP_MAX_CALL_SECONDS, like Kamailio's dialog timeout).
    max_duration: int = 4 * 3600
    branches: dict[str, Branch] = field(default_factory=dict)
    answered_at: datetime | None = None
    callee_at: Destination | None = None
    answer: SipMessage | None = None
    best: SipMessage | None = None
    cancelled: bool = False
    ended: bool = False
    limit: asyncio.TimerHandle | None = None
    rules: dict[str, Any] = field(default_factory=dict)
    called: str | None = None
    pending_rule: str | None = None

    @property
    def limit_seconds(self) -> int:
        """When the proxy ends the answered call itself: credit or duration, whichever first."""
        if self.max_seconds is not None and self.max_seconds < self.max_duration:
            return self.max_seconds
        return self.max_duration

    @property
    def limit_reason(self) -> str:
        """The Reason of the BYEs sent at the limit (RFC 3326)."""
        if self.max_seconds is not None and self.max_seconds < self.max_duration:
            return 'Q.850;cause=16;text="credit limit reached"'
        return 'Q.850;cause=102;text="maximum call duration"'

    timed_out: bool = False
    ring_timer: asyncio.TimerHandle | None = None


@dataclass
class Relay:
    """An in-dialog request forwarded by the proxy; its responses go back to `origin`."""

    origin: Source
    request: SipMessage
    call_id: str


class CallControl:
    """The INVITE side of the SIP edge."""

    def __init__(
        self,
        *,
        settings: Settings,
        transport: SipTransport,
        registrar: Registrar,
        directory: Directory,
        location: Location,
        sessionmaker: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        reply: Callable[[SipMessage, Source, Reply], object],
        transactions: Transactions,
    ) -> None:
        self.settings = settings
        self.transport = transport
        self.registrar = registrar
        self.directory = directory
        self.location = location
        self.sessionmaker = sessionmaker
        self.outbox = outbox
        self.reply = reply
        self.transactions = transactions
        self.calls: dict[str, Call] = {}
        self.branches: dict[str, tuple[Call, Branch]] = {}
        self.relays: dict[str, Relay] = {}
        self._timers: set[asyncio.Future[None]] = set()
        token = settings.service_token()
        self.auth_headers: Headers = token.headers
        self.http = httpx.AsyncClient(timeout=5.0)
        self.host = settings.sip_public_host
        self.port = settings.sip_port
        self.originator = Originator(self)

    async def close(self) -> None:
        for call in self.calls.values():
            if call.limit:
                call.limit.cancel()
            for branch in call.branches.values():
                if branch.retransmit:
                    branch.retransmit.cancel()
        await self.http.aclose()

    # -- requests -------------------------------------------------------------

    async def invite(self, req: SipMessage, source: Source) -> Reply | None:
        """A new INVITE from a phone: authenticate, route, authorize, fork."""
        from_ = parse_name_addr(req.get("from") or "")
        from_uri = parse_uri(from_.uri) if from_ else None
        ruri = parse_uri(req.uri or "")
        if from_uri is None or ruri is None or not ruri.user:
            return Reply(416, "Unsupported URI Scheme")
        max_forwards = req.get("max-forwards")
        if max_forwards is not None and int(max_forwards) == 0:
            return Reply(483, "Too Many Hops")
        if self._from_carrier(source):
            # Inbound from the carrier: trusted by its address, routed by the called DID.
            self.reply(req, source, Reply(100, "Trying"))
            did = _e164(ruri.user)
            decision = await self._post(
                self.settings.routing_url + "/v1/route",
                {
                    "tenant_id": None,
                    "extension": None,
                    "digits": ruri.user,
                    "inbound_did": did,
                    "at": _now().isoformat(),
                    "forwarded_from": None,
                },
            )
            if decision is None:
                return Reply(503, "Service Unavailable", [("retry-after", "5")])
            if not decision.get("tenant_id"):
                return Reply(404, "Not Found")
            tenant_id = uuid.UUID(decision["tenant_id"])
            caller = _e164(from_uri.user) if from_uri.user else "anonymous"
            station = str(decision.get("extension") or "")
            direction = Direction.inbound
            callee = did
        else:
            tenant = await self.directory.tenant(from_uri.host)
            if tenant is None:
                return Reply(403, "Forbidden", [("warning", '399 - "domain not served"')])
            auth = await self.registrar.authenticate(
                req, source, tenant.sip_realm, tenant.tenant_id, proxy=True
            )
            if isinstance(auth, Reply):
                return auth
            self.reply(req, source, Reply(100, "Trying"))
            decision = await self._post(
                self.settings.routing_url + "/v1/route",
                {
                    "tenant_id": str(tenant.tenant_id),
                    "extension": auth.extension,
                    "digits": ruri.user,
                    "inbound_did": None,
                    "at": _now().isoformat(),
                    "forwarded_from": None,
                },
            )
            if decision is None:
                return Reply(503, "Service Unavailable", [("retry-after", "5")])
            tenant_id = uuid.UUID(decision.get("tenant_id") or str(tenant.tenant_id))
            caller = auth.extension
            station = str(decision.get("extension") or auth.extension)
            direction = (
                Direction.internal
                if decision.get("action") in LOCAL_ACTIONS
                else Direction.outbound
            )
            callee = decision.get("e164") or ruri.user
        call_class = CallClass(decision.get("class") or "internal")
        call = Call(
            call_id=req.call_id,
            tenant_id=tenant_id,
            extension=station,
            caller=caller,
            callee=callee,
            call_class=call_class,
            direction=direction,
            invite=req,
            source=source,
            started_at=_now(),
        )
        await self.track(call)
        if decision.get("action") == "reject":
            reject = decision.get("reject") or {}
            await self._end(call, Disposition.rejected)
            return Reply(int(reject.get("status", 403)), str(reject.get("reason", "Forbidden")))
        if call_class not in UNRATED:
            verdict = await self._post(
                self.settings.rating_url + "/v1/authorize",
                {
                    "tenant_id": str(call.tenant_id),
                    "call_id": call.call_id,
                    "extension": call.extension,
                    "e164": decision.get("e164"),
                    "class": call_class.value,
                },
            )
            if verdict is None:
                await self._end(call, Disposition.failed)
                return Reply(503, "Service Unavailable", [("retry-after", "5")])
            if not verdict.get("allowed"):
                reason = str(verdict.get("reason") or "not authorized").replace('"', "'")
                await self._end(call, Disposition.rejected)
                return Reply(402, "Payment Required", [("warning", f'399 - "{reason}"')])
            call.max_seconds = verdict.get("max_seconds")
        call.rules = dict(decision.get("failure_rules") or {})
        targets = self._targets(decision)
        called = (decision.get("targets") or [{}])[0].get("extension")
        call.called = str(called) if called else None
        if not targets:
            # Nobody to ring: the unavailable rule, if any (else 480).
            if await self._follow(call, "unavailable"):
                return None
            await self._end(call, Disposition.failed)
            return Reply(480, "Temporarily Unavailable")
        for uri, destination in targets:
            self._fork(call, uri, destination)
        no_answer = call.rules.get("no_answer")
        # Without a no-answer rule, Timer C still ends a call that rings for ever.
        ring_for = float((no_answer or {}).get("after_seconds") or self.settings.sip_timer_c)
        call.ring_timer = asyncio.get_running_loop().call_later(ring_for, self._ring_timeout, call)
        return None  # the final response comes from a branch

    def _ring_timeout(self, call: Call) -> None:
        """No answer in time: cancel the branches; their 487s lead to the no-answer rule."""
        if call.answer is not None or call.ended:
            return
        call.pending_rule = "no_answer" if call.rules.get("no_answer") else None
        call.timed_out = True
        for b in call.branches.values():
            self._cancel_branch(b)

    async def track(self, call: Call) -> None:
        """Holds a call accepted for routing and announces it (call.started)."""
        call.max_duration = self.settings.sip_max_call_seconds
        self.calls[call.call_id] = call
        await self._event(
            call,
            CallStarted(
                call_id=call.call_id,
                tenant_id=call.tenant_id,
                extension=call.extension,
                caller=call.caller,
                callee=call.callee,
                call_class=call.call_class,
                direction=call.direction,
                started_at=call.started_at,
            ),
        )

    async def answered(self, call: Call, answer: SipMessage, at_limit: Callable[[], None]) -> None:
        """The call is answered (proxy and click-to-dial): ringing stops, call.answered is
        announced, and `at_limit` runs at its credit or maximum duration unless it ends first."""
        if call.ring_timer:
            call.ring_timer.cancel()
        call.answer = answer
        call.answered_at = _now()
        await self._event(
            call,
            CallAnswered(
                call_id=call.call_id,
                tenant_id=call.tenant_id,
                extension=call.extension,
                answered_at=call.answered_at,
            ),
        )
        call.limit = asyncio.get_running_loop().call_later(call.limit_seconds, at_limit)

    async def _follow(self, call: Call, rule_name: str) -> bool:
        """Follows a failure rule from routing (once per call); False when there is none."""
        rule = call.rules.pop(rule_name, None)
        call.rules = {}  # one forwarding per call: no loops between stations
        if not rule:
            return False
        kind = rule.get("kind")
        forwarded_from = call.called or call.extension
        # The rule belongs to the forwarding station, whose tenant may not be the caller's
        # (an inter-company or on-net call): its targets and its bill are that tenant's.
        rule_tenant = str(rule.get("tenant_id") or call.tenant_id)
        targets: list[tuple[str, Destination]] | None = None
        if kind == "extension" and rule.get("extension"):
            targets = self._targets(
                {
                    "action": "extension",
                    "targets": [{"tenant_id": rule_tenant, "extension": rule["extension"]}],
                }
            )
            call.callee = str(rule["extension"])
        elif kind == "external" and rule.get("e164"):
            # Billed as an outbound call of the forwarding station, its permissions applied.
            decision = await self._post(
                self.settings.routing_url + "/v1/route",
                {
                    "tenant_id": rule_tenant,
                    "extension": forwarded_from,
                    "digits": rule["e164"],
                    "inbound_did": None,
                    "at": _now().isoformat(),
                    "forwarded_from": forwarded_from,
                },
            )
            if decision is None or decision.get("action") == "reject":
                return False
            call_class = CallClass(decision.get("class") or "national_fixed")
            if call_class not in UNRATED:
                verdict = await self._post(
                    self.settings.rating_url + "/v1/authorize",
                    {
                        "tenant_id": rule_tenant,
                        "call_id": call.call_id,
                        "extension": forwarded_from,
                        "e164": decision.get("e164"),
                        "class": call_class.value,
                    },
                )
                if not verdict or not verdict.get("allowed"):
                    return False
                call.max_seconds = verdict.get("max_seconds")
            call.tenant_id = uuid.UUID(rule_tenant)
            call.extension = forwarded_from
            call.call_class = call_class
            call.direction = Direction.outbound
            call.callee = str(decision.get("e164") or rule["e164"])
            targets = self._targets(decision)
        elif kind in ("voicemail", "ivr") and self.settings.media_uri:
            media = parse_uri(self.settings.media_uri)
            if media is not None:
                uri = f"sip:{kind}-{forwarded_from}@{media.hostport()}"
                targets = [(uri, ("udp", media.host.strip("[]"), media.port or 5060, None))]
        if not targets:
            return False
        call.forwarded_from = forwarded_from
        call.best = None
        call.timed_out = False
        for uri, destination in targets:
            self._fork(call, uri, destination)
        call.ring_timer = asyncio.get_running_loop().call_later(
            self.settings.sip_timer_c, self._ring_timeout, call
        )
        return True

    async def originate(self, *, tenant: Tenant, extension: str, destination: str) -> str:
        """Click-to-dial: routes and authorizes as a call of `extension`, then rings it."""
        phones = self._targets(
            {
                "action": "extension",
                "targets": [{"tenant_id": str(tenant.tenant_id), "extension": extension}],
            }
        )
        if not phones:
            raise Problem(
                409, "Extension not registered", f"no device of {extension} is registered"
            )
        decision = await self._post(
            self.settings.routing_url + "/v1/route",
            {
                "tenant_id": str(tenant.tenant_id),
                "extension": extension,
                "digits": destination,
                "inbound_did": None,
                "at": _now().isoformat(),
                "forwarded_from": None,
            },
        )
        if decision is None:
            raise Problem(503, "Routing unavailable", "the routing service did not answer")
        if decision.get("action") == "reject":
            reject = decision.get("reject") or {}
            raise Problem(
                int(reject.get("status", 403)),
                "Call refused",
                str(reject.get("reason") or "routing refused the call"),
            )
        call_class = CallClass(decision.get("class") or "internal")
        call_id = f"ctd-{uuid.uuid4().hex}"
        max_seconds = None
        if call_class not in UNRATED:
            verdict = await self._post(
                self.settings.rating_url + "/v1/authorize",
                {
                    "tenant_id": str(tenant.tenant_id),
                    "call_id": call_id,
                    "extension": extension,
                    "e164": decision.get("e164"),
                    "class": call_class.value,
                },
            )
            if verdict is None:
                raise Problem(503, "Rating unavailable", "the rating service did not answer")
            if not verdict.get("allowed"):
                raise Problem(402, "Call not authorized", str(verdict.get("reason") or "no credit"))
            max_seconds = verdict.get("max_seconds")
        targets = self._targets(decision) or []
        placeholder = SipMessage(method="INVITE", uri=f"sip:{destination}@{tenant.sip_realm}")
        call = Call(
            call_id=call_id,
            tenant_id=tenant.tenant_id,
            extension=extension,
            caller=extension,
            callee=decision.get("e164") or destination,
            call_class=call_class,
            direction=Direction.internal
            if decision.get("action") in LOCAL_ACTIONS
            else Direction.outbound,
            invite=placeholder,
            source=Source("udp", "0.0.0.0", 0),
            started_at=_now(),
            max_seconds=max_seconds,
        )
        await self.originator.start(
            call=call,
            realm=tenant.sip_realm,
            phones=phones,
            targets=targets,
            destination=destination,
        )
        return call_id

    def _targets(self, decision: dict[str, Any]) -> list[tuple[str, Destination]] | None:
        """Where the INVITE goes: every binding of every target, or the carrier."""
        action = decision.get("action")
        if action in LOCAL_ACTIONS:
            out: list[tuple[str, Destination]] = []
            for target in decision.get("targets") or []:
                key = (uuid.UUID(target["tenant_id"]), str(target["extension"]))
                for b in self.location.bindings(key):
                    contact = parse_uri(b.contact)
                    if contact is None:
                        continue
                    transport, ip, port = b.destination(contact.host, contact.port)
                    out.append((b.contact, (transport, ip, port, b.connection_id)))
            return out
        if action == "pstn":
            carrier = parse_uri(self.settings.carrier_uri)
            if carrier is None:
                return None
            uri = f"sip:{decision.get('e164')}@{carrier.hostport()}"
            return [(uri, ("udp", carrier.host.strip("[]"), carrier.port or 5060, None))]
        return None  # ivr / voicemail need MEDIA_URI: not served yet

    def _fork(self, call: Call, uri: str, destination: Destination) -> None:
        branch = "z9hG4bK" + uuid.uuid4().hex
        request = SipMessage(method="INVITE", uri=uri, body=call.invite.body)
        request.headers.append(("via", self._via(branch, destination[0])))
        for name, value in call.invite.headers:
            if name in ("proxy-authorization", "route", "content-length"):
                continue  # our credentials are consumed here; the Route was us
            if name == "max-forwards":
                value = str(int(value) - 1)
            request.headers.append((name, value))
        if call.invite.get("max-forwards") is None:
            request.headers.append(("max-forwards", "69"))
        request.add("record-route", f"<sip:{self.host}:{self.port};lr>", first=False)
        b = Branch(branch, request, destination)
        call.branches[branch] = b
        self.branches[branch] = (call, b)
        data = request.encode()
        self._send_to(data, destination)
        # Timer A resends over UDP; Timer B ends a silent branch on any transport
        # (a TCP phone whose connection is gone, too).
        b.retransmit = asyncio.create_task(self._retransmit(b, data))

    async def _retransmit(self, b: Branch, data: bytes) -> None:
        """Timer A: resend the INVITE until anything comes back (RFC 3261 17.1.1.2)."""
        interval = self.settings.sip_t1
        for _ in range(6):
            await asyncio.sleep(interval)
            if b.status:
                return
            if b.destination[0] == "udp":
                self._send_to(data, b.destination)
            interval *= 2
        await asyncio.sleep(self.settings.sip_t1)
        if not b.status:
            # Timer B: nothing came back in 64*T1; the branch ends as a 408 (RFC 3261 16.8).
            timeout = make_response(
                b.request, 408, "Request Timeout", source_ip=self.host, source_port=self.port
            )
            await self.response(timeout, Source("udp", self.host, self.port))

    def cancel(self, req: SipMessage, source: Source) -> Reply:
        """CANCEL of a pending INVITE: 200 to it, CANCEL to every branch, 487 follows."""
        call = self.calls.get(req.call_id)
        if call is None or call.answer is not None or call.ended:
            return Reply(481, "Call/Transaction Does Not Exist")
        call.cancelled = True
        for b in call.branches.values():
            self._cancel_branch(b)
        return Reply(200, "OK")

    def _cancel_branch(self, b: Branch) -> None:
        if b.status >= 200:
            return
        cancel = SipMessage(method="CANCEL", uri=b.request.uri)
        cancel.headers.append(("via", b.request.get("via") or ""))
        for name in ("from", "to", "call-id", "route"):
            value = b.request.get(name)
            if value:
                cancel.headers.append((name, value))
        number, _ = b.request.cseq()
        cancel.headers.append(("cseq", f"{number} CANCEL"))
        cancel.headers.append(("max-forwards", "70"))
        self._send_to(cancel.encode(), b.destination)

    async def in_dialog(self, req: SipMessage, source: Source) -> Reply | None:
        """ACK, BYE, re-INVITE, UPDATE, INFO inside a dialog: loose routing to the other side."""
        if self.originator.owns(req.call_id):
            return await self.originator.in_dialog(req, source)
        call = self.calls.get(req.call_id)
        if call is None or call.callee_at is None or not _belongs(req, call):
            return None if req.method == "ACK" else Reply(481, "Call/Transaction Does Not Exist")
        from_caller = (source.ip, source.port) == (call.source.ip, call.source.port)
        destination: Destination = (
            call.callee_at
            if from_caller
            else (
                call.source.transport,
                call.source.ip,
                call.source.port,
                call.source.connection_id,
            )
        )
        forward = SipMessage(method=req.method, uri=req.uri, body=req.body)
        branch = "z9hG4bK" + uuid.uuid4().hex
        forward.headers.append(("via", self._via(branch, destination[0])))
        routes = [r for r in req.all("route") if not self._is_us(r)]
        for name, value in req.headers:
            if name in ("route", "content-length"):
                continue
            if name == "max-forwards":
                value = str(max(int(value) - 1, 0))
            forward.headers.append((name, value))
        for route in routes:
            forward.headers.append(("route", route))
        if req.method != "ACK":
            self.relays[branch] = Relay(source, req, call.call_id)
        self._send_to(forward.encode(), destination)
        if req.method == "BYE":
            await self._end(call, Disposition.answered)
        return None

    # -- responses ------------------------------------------------------------

    async def response(self, resp: SipMessage, source: Source) -> None:
        """A response to something the proxy sent: strip our Via and act on it."""
        via = parse_via(resp.get("via") or "")
        if via is None:
            return
        upstream = SipMessage(status=resp.status, reason=resp.reason, body=resp.body)
        first = True
        for name, value in resp.headers:
            if name == "via" and first:
                first = False
                rest = resp.all("via")[1:]
                for v in rest:
                    upstream.headers.append(("via", v))
                continue
            if name in ("via", "content-length"):
                continue
            upstream.headers.append((name, value))
        if await self.originator.response(via.branch, resp):
            return
        relay = self.relays.get(via.branch)
        if relay is not None:
            data = upstream.encode()
            if (resp.status or 0) >= 200:
                del self.relays[via.branch]
                # A retransmission of the request gets this final response again.
                self.transactions.complete(transaction_key(relay.request), data)
            self._send_source(data, relay.origin)
            return
        found = self.branches.get(via.branch)
        if found is None:
            return
        call, b = found
        status = resp.status or 0
        _, method = resp.cseq()
        if method == "CANCEL":
            return
        first_final = b.status < 200 <= status
        b.status = max(b.status, status) if b.status < 200 else b.status
        if status == 100:
            return
        if status < 200:
            self._send_source(upstream.encode(), call.source)
            return
        if 200 <= status < 300:
            if call.answer is None and not call.ended:
                call.callee_at = b.destination
                for other in call.branches.values():
                    if other is not b:
                        self._cancel_branch(other)
                await self.answered(call, resp, lambda: self._schedule_cut(call))
            self._send_source(upstream.encode(), call.source)  # every 2xx goes upstream
            return
        if first_final:
            self._ack(b, resp)
        if call.best is None or _better(status, call.best.status or 0):
            call.best = upstream
        if call.answer is None and all(x.status >= 200 for x in call.branches.values()):
            assert call.best is not None
            final = call.best.status or 500
            rule = call.pending_rule or ("busy" if final in (486, 600) else None)
            call.pending_rule = None
            if not call.cancelled and rule and await self._follow(call, rule):
                return
            data = call.best.encode()
            # The caller's INVITE transaction keeps it for a retransmitted INVITE.
            self.transactions.complete(transaction_key(call.invite), data)
            self._send_source(data, call.source)
            disposition = _disposition(final, call.cancelled)
            if call.timed_out and not call.cancelled:
                disposition = Disposition.no_answer
            await self._end(call, disposition)

    def _ack(self, b: Branch, resp: SipMessage) -> None:
        """The hop-by-hop ACK of a non-2xx final response (same branch as the INVITE)."""
        ack = SipMessage(method="ACK", uri=b.request.uri)
        ack.headers.append(("via", b.request.get("via") or ""))
        ack.headers.append(("from", b.request.get("from") or ""))
        ack.headers.append(("to", resp.get("to") or ""))
        ack.headers.append(("call-id", b.request.call_id))
        number, _ = b.request.cseq()
        ack.headers.append(("cseq", f"{number} ACK"))
        ack.headers.append(("max-forwards", "70"))
        self._send_to(ack.encode(), b.destination)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Runs work a timer started, holding its task until it is done."""
        task = asyncio.ensure_future(coro)
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    def _schedule_cut(self, call: Call) -> None:
        self.spawn(self._cut(call))

    async def _cut(self, call: Call) -> None:
        """The call's limit (prepaid credit or maximum duration): BYE to both sides, as the
        dialog's own proxy."""
        if call.ended or call.answer is None or call.callee_at is None:
            return
        invite, answer = call.invite, call.answer
        number, _ = invite.cseq()
        contact_callee = parse_name_addr(answer.get("contact") or "")
        contact_caller = parse_name_addr(invite.get("contact") or "")
        sides = [
            (contact_callee, invite.get("from"), answer.get("to"), number + 1, call.callee_at),
            (
                contact_caller,
                answer.get("to"),
                invite.get("from"),
                number + 1000,
                (
                    call.source.transport,
                    call.source.ip,
                    call.source.port,
                    call.source.connection_id,
                ),
            ),
        ]
        for contact, from_, to, cseq, destination in sides:
            if contact is None:
                continue
            bye = SipMessage(method="BYE", uri=contact.uri)
            bye.headers.append(("via", self._via("z9hG4bK" + uuid.uuid4().hex, destination[0])))
            bye.headers += [
                ("from", from_ or ""),
                ("to", to or ""),
                ("call-id", call.call_id),
                ("cseq", f"{cseq} BYE"),
                ("max-forwards", "70"),
                ("reason", call.limit_reason),
            ]
            self._send_to(bye.encode(), destination)
        await self._end(call, Disposition.answered)

    # -- shared ---------------------------------------------------------------

    async def _end(self, call: Call, disposition: Disposition) -> None:
        """call.ended, exactly once per call."""
        if call.ended:
            return
        call.ended = True
        for timer in (call.limit, call.ring_timer):
            if timer:
                timer.cancel()
        ended = _now()
        seconds = 0
        if call.answered_at is not None and disposition is Disposition.answered:
            seconds = max(0, round((ended - call.answered_at).total_seconds()))
        CALLS.labels(disposition.value).inc()
        await self._event(
            call,
            CallEnded(
                call_id=call.call_id,
                tenant_id=call.tenant_id,
                extension=call.extension,
                caller=call.caller,
                callee=call.callee,
                call_class=call.call_class,
                direction=call.direction,
                disposition=disposition,
                started_at=call.started_at,
                answered_at=call.answered_at,
                ended_at=ended,
                billable_seconds=seconds,
                forwarded_from=call.forwarded_from,
            ),
        )
        for branch in call.branches:
            self.branches.pop(branch, None)
        # The dialog stays a little for late retransmissions of BYE or 2xx.
        asyncio.get_running_loop().call_later(32, self.calls.pop, call.call_id, None)

    async def _event(self, call: Call, event: Any) -> None:
        """Publishes a call event with the dialog's stored state, in one transaction
        (group-committed with other calls' events and the location's changes)."""
        statement: Executable
        if isinstance(event, CallEnded):
            statement = delete(DIALOG).where(DIALOG.c.call_id == call.call_id)
        else:
            row = {**_row(call), "legs": self.originator.saved(call.call_id)}
            insert = pg_insert(DIALOG).values(**row)
            statement = insert.on_conflict_do_update(
                index_elements=["call_id"],
                set_={k: insert.excluded[k] for k in row if k != "call_id"},
            )
        await self.location.commit(Change(events=[event], statements=[statement]))

    async def load(self) -> int:
        """Dialogs from before a restart: answered ones continue; unanswered ones are ended."""
        async with self.sessionmaker() as session:
            rows = (await session.execute(select(DIALOG))).all()
        for row in rows:
            invite = parse(row.invite.encode())
            if not isinstance(invite, SipMessage):
                # Click-to-dial has no caller's INVITE, only a placeholder (not a full message).
                invite = SipMessage(method="INVITE", uri=f"sip:{row.callee}")
            answer = parse(row.answer.encode()) if row.answer else None
            transport, ip, port = _address(row.caller_at)
            call = Call(
                call_id=row.call_id,
                tenant_id=row.tenant_id,
                extension=row.extension,
                caller=row.caller,
                callee=row.callee,
                call_class=CallClass(row.call_class),
                direction=Direction(row.direction),
                invite=invite,
                source=Source(transport, ip, port),
                started_at=row.started_at,
                forwarded_from=row.forwarded_from,
                max_seconds=row.max_seconds,
                max_duration=self.settings.sip_max_call_seconds,
                answered_at=row.answered_at,
                answer=answer if isinstance(answer, SipMessage) else None,
            )
            if row.callee_at:
                transport, ip, port = _address(row.callee_at)
                call.callee_at = (transport, ip, port, None)
            self.calls[call.call_id] = call
            if call.answered_at is not None and row.legs:
                # A click-to-dial call: the controller's two dialogs go on.
                self.originator.restore(call, row.legs)
            elif call.answered_at is None or call.callee_at is None:
                # Its setup died with the old process: the phones give up on it.
                await self._end(call, Disposition.failed)
            else:
                left = call.limit_seconds - (_now() - call.answered_at).total_seconds()
                call.limit = asyncio.get_running_loop().call_later(
                    max(left, 0), self._schedule_cut, call
                )
        return len(rows)

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            response = await self.http.post(url, json=body, headers=await self.auth_headers())
        except (httpx.HTTPError, OSError) as exc:
            log.warning("calls: %s unreachable (%s)", url, exc)
            return None
        if response.status_code != 200:
            log.warning("calls: %s answered %s: %s", url, response.status_code, response.text[:200])
            return None
        result: dict[str, Any] = response.json()
        return result

    def _from_carrier(self, source: Source) -> bool:
        carrier = parse_uri(self.settings.carrier_uri)
        return bool(
            carrier
            and source.ip == carrier.host.strip("[]")
            and source.port == (carrier.port or 5060)
        )

    def _via(self, branch: str, transport: str) -> str:
        return f"SIP/2.0/{transport.upper()} {self.host}:{self.port};branch={branch};rport"

    def _is_us(self, route: str) -> bool:
        addr = parse_name_addr(route)
        uri = parse_uri(addr.uri) if addr else None
        return bool(uri and uri.host == self.host and (uri.port or 5060) == self.port)

    def _send_to(self, data: bytes, destination: Destination) -> None:
        transport, ip, port, connection = destination
        self.transport.send(data, transport, ip, port, connection)

    def _send_source(self, data: bytes, source: Source) -> None:
        self.transport.send(data, source.transport, source.ip, source.port, source.connection_id)


def tags(msg: SipMessage) -> tuple[str | None, str | None]:
    """The From and To tags of a message."""
    from_ = parse_name_addr(msg.get("from") or "")
    to = parse_name_addr(msg.get("to") or "")
    return (from_.tag if from_ else None, to.tag if to else None)


def _belongs(req: SipMessage, call: Call) -> bool:
    """Whether an in-dialog request is of the call's dialog (its two tags, from either
    side) while it lasts; after the BYE only its retransmissions and ACKs are."""
    if call.ended and req.method not in ("BYE", "ACK"):
        return False
    if call.answer is None:
        return True
    caller_tag, _ = tags(call.invite)
    _, callee_tag = tags(call.answer)
    return set(tags(req)) == {caller_tag, callee_tag}


def _e164(digits: str) -> str:
    """A number from the carrier in E.164 (+CC...), whatever prefix it came with."""
    digits = digits.split(";")[0]
    if digits.startswith("+"):
        return digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    return "+" + digits


def _row(call: Call) -> dict[str, Any]:
    source = call.source
    return {
        "call_id": call.call_id,
        "tenant_id": call.tenant_id,
        "extension": call.extension,
        "caller": call.caller,
        "callee": call.callee,
        "call_class": call.call_class.value,
        "direction": call.direction.value,
        "forwarded_from": call.forwarded_from,
        "started_at": call.started_at,
        "answered_at": call.answered_at,
        "max_seconds": call.max_seconds,
        "caller_at": f"{source.transport}|{source.ip}|{source.port}",
        "callee_at": "|".join(str(x) for x in call.callee_at[:3]) if call.callee_at else None,
        "invite": _text(call.invite),
        "answer": _text(call.answer) if call.answer else None,
    }


def _text(msg: SipMessage) -> str:
    return msg.encode().decode("utf-8", "replace").replace("\x00", "")


def _address(text: str) -> tuple[str, str, int]:
    transport, ip, port = text.split("|")
    return transport, ip, int(port)


def _better(status: int, than: int) -> bool:
    """RFC 3261 16.7 step 6, simplified: 6xx wins, then the lowest class, 4xx before 5xx."""
    if than // 100 == 6:
        return False
    if status // 100 == 6:
        return True
    return status // 100 < than // 100 or (status // 100 == than // 100 and status < than)


def _disposition(status: int, cancelled: bool) -> Disposition:
    if cancelled or status == 487:
        return Disposition.cancelled
    if status in (486, 600):
        return Disposition.busy
    if status in (408, 480):
        return Disposition.no_answer
    if 400 <= status < 500 or status == 603:
        return Disposition.rejected
    return Disposition.failed
