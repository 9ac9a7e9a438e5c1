"""Click-to-dial: third-party call control, RFC 3725 flow I, with no media server.

The controller rings the user's phones with an INVITE without SDP; the phone that answers
offers in its 200; that offer goes to the destination in a second INVITE; the destination's
answer goes back in the ACK to the phone. Two dialogs, one call: a BYE on either side ends
the other, and the call is routed, rated and reported like any call of that extension.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from centralino_proto.events import Disposition

from .registrar import Reply
from .sip.message import SipMessage, parse, parse_name_addr
from .sip.transport import Source

if TYPE_CHECKING:
    from .calls import Call, CallControl, Destination

log = logging.getLogger("centralino.registrar.originate")


@dataclass
class Leg:
    """One of the controller's two dialogs (a UAC dialog of the registrar)."""

    call_id: str
    from_: str
    to: str
    destination: Destination | None = None
    remote_target: str | None = None
    to_with_tag: str | None = None
    cseq: int = 1
    branches: dict[str, tuple[str, Destination]] = field(default_factory=dict)
    answered: SipMessage | None = None
    done: bool = False
    refused: set[str] = field(default_factory=set)


@dataclass
class Originated:
    call: Call
    phone: Leg
    far: Leg
    far_targets: list[tuple[str, Destination]]


class Originator:
    """Originated calls by the Call-ID of either leg."""

    def __init__(self, control: CallControl) -> None:
        self.control = control
        self.by_call_id: dict[str, Originated] = {}
        self.by_branch: dict[str, tuple[Originated, Leg]] = {}

    async def start(
        self,
        *,
        call: Call,
        realm: str,
        phones: list[tuple[str, Destination]],
        targets: list[tuple[str, Destination]],
        destination: str,
    ) -> None:
        """Rings the phones of the extension (first leg), announcing the call."""
        c = self.control
        phone = Leg(
            call_id=call.call_id,
            from_=f'"Click-to-dial {destination}" <sip:{destination}@{realm}>;tag={uuid.uuid4().hex[:10]}',
            to=f"<sip:{call.extension}@{realm}>",
        )
        far = Leg(
            call_id=call.call_id + "-b",
            from_=f"<sip:{call.extension}@{realm}>;tag={uuid.uuid4().hex[:10]}",
            to=f"<sip:{destination}@{realm}>",
        )
        o = Originated(call=call, phone=phone, far=far, far_targets=targets)
        self.by_call_id[phone.call_id] = o
        self.by_call_id[far.call_id] = o
        await c.track(call)
        for uri, dest in phones:
            self._invite(o, phone, uri, dest, body=b"")
        self._ring(o)

    def _ring(self, o: Originated) -> None:
        """(Re)starts Timer C (RFC 3261 16.6) for the leg that rings now: a phone or a
        destination that never answers must not keep the call open."""
        call = o.call
        if call.ring_timer:
            call.ring_timer.cancel()
        call.ring_timer = asyncio.get_running_loop().call_later(
            self.control.settings.sip_timer_c, lambda: self.control.spawn(self._no_answer(o))
        )

    async def _no_answer(self, o: Originated) -> None:
        """Timer C fired: CANCEL the leg still ringing; an answered phone gets ACK and BYE."""
        if o.phone.done and o.far.done:
            return
        ringing = o.phone if o.phone.answered is None else o.far
        for branch in list(ringing.branches):
            self._cancel(ringing, branch)
        o.phone.done = o.far.done = True
        if o.phone.answered is not None:
            self._request(o.phone, "ACK")
            self._request(o.phone, "BYE")
        await self._end(o, Disposition.no_answer)

    def _invite(self, o: Originated, leg: Leg, uri: str, dest: Destination, body: bytes) -> None:
        c = self.control
        branch = "z9hG4bK" + uuid.uuid4().hex
        req = SipMessage(method="INVITE", uri=uri, body=body)
        req.headers += [
            ("via", c._via(branch, dest[0])),
            ("max-forwards", "70"),
            ("from", leg.from_),
            ("to", leg.to),
            ("call-id", leg.call_id),
            ("cseq", f"{leg.cseq} INVITE"),
            ("contact", f"<sip:click-to-dial@{c.host}:{c.port}>"),
        ]
        if body:
            req.headers.append(("content-type", "application/sdp"))
        leg.branches[branch] = (uri, dest)
        self.by_branch[branch] = (o, leg)
        c._send_to(req.encode(), dest)

    def _request(self, leg: Leg, method: str, body: bytes = b"") -> None:
        """ACK or BYE inside one of the controller's dialogs."""
        if leg.destination is None or leg.remote_target is None:
            return
        c = self.control
        msg = SipMessage(method=method, uri=leg.remote_target, body=body)
        if method != "ACK":
            leg.cseq += 1
        msg.headers += [
            ("via", c._via("z9hG4bK" + uuid.uuid4().hex, leg.destination[0])),
            ("max-forwards", "70"),
            ("from", leg.from_),
            ("to", leg.to_with_tag or leg.to),
            ("call-id", leg.call_id),
            ("cseq", f"{leg.cseq} {method}"),
        ]
        if body:
            msg.headers.append(("content-type", "application/sdp"))
        c._send_to(msg.encode(), leg.destination)

    async def response(self, branch: str, resp: SipMessage) -> bool:
        """A response on one of the controller's INVITEs; False when it is not ours."""
        found = self.by_branch.get(branch)
        if found is None:
            return False
        o, leg = found
        status = resp.status or 0
        _, method = resp.cseq()
        if method != "INVITE" or status < 200:
            return True
        uri, dest = leg.branches[branch]
        if status >= 300:
            self._ack_failure(leg, branch, uri, dest, resp)
            leg.branches.pop(branch, None)
            if not leg.branches and leg.answered is None and not leg.done:
                await self._failed(o, leg, status)
            return True
        if leg.answered is not None:
            if leg.to_with_tag == resp.get("to"):
                # A retransmitted 200: ACK again once the call is joined.
                if o.far.answered is not None and leg is o.phone:
                    self._request(leg, "ACK", o.far.answered.body)
                elif leg is o.far:
                    self._request(leg, "ACK")
            else:
                # Another branch answered too (a 2xx racing the CANCEL): not wanted.
                self._refuse(leg, dest, resp)
            return True
        if leg.done:
            # The call was given up while this branch rang: its 2xx raced the CANCEL.
            self._refuse(leg, dest, resp)
            return True
        leg.answered = resp
        leg.destination = dest
        contact = parse_name_addr(resp.get("contact") or "")
        leg.remote_target = contact.uri if contact else uri
        leg.to_with_tag = resp.get("to")
        for other in list(leg.branches):
            if other != branch:
                self._cancel(leg, other)
        if leg is o.phone:
            # The phone's offer goes to the destination (RFC 3725 flow I, step 3).
            if not o.far_targets:
                await self._failed(o, o.far, 480)
                return True
            for far_uri, far_dest in o.far_targets:
                self._invite(o, o.far, far_uri, far_dest, body=resp.body)
            self._ring(o)
            return True
        # The destination answered: ACK it, and give its answer to the phone.
        self._request(o.far, "ACK")
        self._request(o.phone, "ACK", resp.body)
        await self.control.answered(o.call, resp, lambda: self._limit(o))
        return True

    def _refuse(self, leg: Leg, dest: Destination, resp: SipMessage) -> None:
        """A 2xx nobody wants (RFC 3261 13.2.2.4): ACK it, then BYE its dialog (once)."""
        contact = parse_name_addr(resp.get("contact") or "")
        to = resp.get("to") or ""
        if contact is None:
            return
        dialog = Leg(
            call_id=leg.call_id,
            from_=leg.from_,
            to=leg.to,
            destination=dest,
            remote_target=contact.uri,
            to_with_tag=to,
            cseq=leg.cseq,
        )
        self._request(dialog, "ACK")
        if to not in leg.refused:
            leg.refused.add(to)
            self._request(dialog, "BYE")

    def _limit(self, o: Originated) -> None:
        self.control.spawn(self.hangup(o, None))

    def _ack_failure(
        self, leg: Leg, branch: str, uri: str, dest: Destination, resp: SipMessage
    ) -> None:
        c = self.control
        ack = SipMessage(method="ACK", uri=uri)
        number = leg.cseq
        ack.headers += [
            ("via", c._via(branch, dest[0])),
            ("max-forwards", "70"),
            ("from", leg.from_),
            ("to", resp.get("to") or leg.to),
            ("call-id", leg.call_id),
            ("cseq", f"{number} ACK"),
        ]
        c._send_to(ack.encode(), dest)

    def _cancel(self, leg: Leg, branch: str) -> None:
        uri, dest = leg.branches[branch]
        c = self.control
        cancel = SipMessage(method="CANCEL", uri=uri)
        cancel.headers += [
            ("via", c._via(branch, dest[0])),
            ("max-forwards", "70"),
            ("from", leg.from_),
            ("to", leg.to),
            ("call-id", leg.call_id),
            ("cseq", f"{leg.cseq} CANCEL"),
        ]
        c._send_to(cancel.encode(), dest)

    async def _failed(self, o: Originated, leg: Leg, status: int) -> None:
        from .calls import _disposition

        o.phone.done = o.far.done = True
        if leg is o.far and o.phone.answered is not None:
            # The destination refused: take the phone's answer and hang up on it.
            self._request(o.phone, "ACK")
            self._request(o.phone, "BYE")
        await self._end(o, _disposition(status, False))

    def saved(self, call_id: str) -> dict[str, Any] | None:
        """What a restart needs of an answered click-to-dial call's two dialogs (else None)."""
        o = self.by_call_id.get(call_id)
        if o is None or o.phone.answered is None or o.far.answered is None:
            return None
        return {"phone": _save(o.phone), "far": _save(o.far)}

    def restore(self, call: Call, saved: dict[str, Any]) -> None:
        """An answered click-to-dial call from before a restart: BYE and its limit work again."""
        o = Originated(
            call=call, phone=_load(saved["phone"]), far=_load(saved["far"]), far_targets=[]
        )
        self.by_call_id[o.phone.call_id] = o
        self.by_call_id[o.far.call_id] = o
        if call.answered_at is not None:
            left = call.limit_seconds - (_now() - call.answered_at).total_seconds()
            call.limit = asyncio.get_running_loop().call_later(max(left, 0), self._limit, o)

    def owns(self, call_id: str) -> bool:
        """Whether a Call-ID is one of the controller's legs."""
        return call_id in self.by_call_id

    async def in_dialog(self, req: SipMessage, source: Source) -> Reply | None:
        """A request inside one of the controller's dialogs (the Call-ID is one of ours)."""
        from .calls import tags

        o = self.by_call_id[req.call_id]
        leg = o.phone if req.call_id == o.phone.call_id else o.far
        ours = parse_name_addr(leg.from_)
        theirs = parse_name_addr(leg.to_with_tag or "")
        dialog = {ours.tag if ours else None, theirs.tag if theirs else None}
        if leg.answered is None or set(tags(req)) != dialog:
            return None if req.method == "ACK" else Reply(481, "Call/Transaction Does Not Exist")
        if req.method == "ACK":
            return None
        if req.method == "BYE":
            await self.hangup(o, leg)
            return Reply(200, "OK")
        if leg.done:
            return Reply(481, "Call/Transaction Does Not Exist")
        if req.method in ("INVITE", "UPDATE"):
            # No media server to re-offer through: the session stays as it was (RFC 3261 14.2).
            return Reply(488, "Not Acceptable Here")
        return Reply(501, "Not Implemented")

    async def hangup(self, o: Originated, from_leg: Leg | None) -> None:
        """Ends the call: BYE to the leg(s) that did not hang up."""
        if o.phone.done and o.far.done:
            return  # already ended (a retransmitted BYE, or a BYE after the limit)
        if o.far.answered is None:
            await self._abandon(o)
            return
        for leg in (o.phone, o.far):
            if leg is not from_leg and not leg.done and leg.answered is not None:
                self._request(leg, "BYE")
            leg.done = True
        await self._end(o, Disposition.answered)

    async def _abandon(self, o: Originated) -> None:
        """The phone hung up while the destination still rang: CANCEL every branch of it.

        Their 487s (and any 2xx racing the CANCEL) still find the call by branch until it
        is forgotten; the call ends now, as cancelled."""
        o.phone.done = True
        o.far.done = True
        # The phone's 2xx still wants its ACK, or it retransmits it for 32 s.
        self._request(o.phone, "ACK")
        for branch in list(o.far.branches):
            self._cancel(o.far, branch)
        await self._end(o, Disposition.cancelled)

    async def _end(self, o: Originated, disposition: Disposition) -> None:
        await self.control._end(o.call, disposition)
        # The branch map stays: late final responses (487s, a 2xx after a CANCEL) are ours.
        asyncio.get_running_loop().call_later(32, self._forget, o)

    def _forget(self, o: Originated) -> None:
        self.by_call_id.pop(o.phone.call_id, None)
        self.by_call_id.pop(o.far.call_id, None)
        for branch in [b for b, (x, _) in self.by_branch.items() if x is o]:
            del self.by_branch[branch]


def _save(leg: Leg) -> dict[str, Any]:
    """An answered leg as JSON (PostgreSQL keeps no NUL in text)."""
    assert leg.answered is not None and leg.destination is not None
    return {
        "call_id": leg.call_id,
        "from": leg.from_,
        "to": leg.to,
        "to_with_tag": leg.to_with_tag,
        "remote_target": leg.remote_target,
        "destination": list(leg.destination[:3]),
        "cseq": leg.cseq,
        "answered": leg.answered.encode().decode("utf-8", "replace").replace("\x00", ""),
    }


def _load(saved: dict[str, Any]) -> Leg:
    """A leg stored by _save."""
    answered = parse(str(saved["answered"]).encode())
    transport, ip, port = saved["destination"]
    return Leg(
        call_id=saved["call_id"],
        from_=saved["from"],
        to=saved["to"],
        destination=(str(transport), str(ip), int(port), None),
        remote_target=saved["remote_target"],
        to_with_tag=saved["to_with_tag"],
        cseq=int(saved["cseq"]),
        answered=answered if isinstance(answered, SipMessage) else None,
    )


def _now() -> datetime:
    return datetime.now(UTC)
