"""The SIP edge: transport -> transaction layer -> method handler -> reply."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any

from prometheus_client import Counter

from centralino_proto.service import ServiceRuntime

from .abuse import AbuseGuard
from .calls import CallControl
from .config import Settings
from .directory import Directory
from .location import Location
from .registrar import Registrar, Reply
from .sip.digest import Nonces
from .sip.message import Malformed, SipMessage, parse_name_addr, parse_uri
from .sip.transaction import Transactions, TxKey, TxState, make_response, transaction_key
from .sip.transport import SipTransport, Source

log = logging.getLogger("centralino.registrar.sip")

MALFORMED = Counter("centralino_sip_malformed_total", "Malformed SIP messages", ["answered"])
RETRANSMISSIONS = Counter(
    "centralino_sip_retransmissions_total", "Retransmitted requests answered from cache"
)

ALLOW = "REGISTER, OPTIONS, INVITE, ACK, CANCEL, BYE, UPDATE, INFO"
IN_DIALOG = {"BYE", "UPDATE", "INFO", "INVITE", "ACK", "NOTIFY", "REFER", "MESSAGE", "PRACK"}


class SipServer:
    """Everything SIP in the registrar process, started and stopped with the service."""

    def __init__(self, settings: Settings, runtime: ServiceRuntime) -> None:
        self.settings = settings
        self.runtime = runtime
        self.directory = Directory(runtime.sessionmaker)
        self.location = Location(
            sessionmaker=runtime.sessionmaker,
            outbox=runtime.outbox,
            writeback_interval=settings.sip_writeback_interval,
            sweep_interval=settings.sip_sweep_interval,
            commit_linger=settings.sip_commit_linger,
        )
        self.nonces = Nonces(
            settings.sip_nonce_secret.get_secret_value().encode(), settings.sip_nonce_lifetime
        )
        self.guard = AbuseGuard(
            threshold=settings.sip_ban_threshold,
            window=settings.sip_ban_window,
            ban=settings.sip_ban_seconds,
        )
        self.registrar = Registrar(
            settings=settings,
            directory=self.directory,
            location=self.location,
            nonces=self.nonces,
            guard=self.guard,
        )
        self.transactions = Transactions()
        self.transport = SipTransport(self.on_message)
        self.calls = CallControl(
            settings=settings,
            transport=self.transport,
            registrar=self.registrar,
            directory=self.directory,
            location=self.location,
            sessionmaker=runtime.sessionmaker,
            outbox=runtime.outbox,
            reply=self.respond,
            transactions=self.transactions,
        )
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        await self.directory.preload()
        await self.location.start()
        await self.calls.load()
        # What start-up loaded (modules, credentials, bindings) lives as long as the process:
        # frozen, it is no longer walked by every full collection, which stalled the SIP loop
        # long enough for phones to retransmit (bench/register).
        gc.collect()
        gc.freeze()
        if self.settings.sip_listen:
            await self.transport.start(self.settings.sip_host, self.settings.sip_port)

    async def stop(self) -> None:
        await self.transport.stop()
        for task in list(self._tasks):
            task.cancel()
        await self.calls.close()
        await self.location.stop()

    # -- dispatch -------------------------------------------------------------

    def on_message(self, msg: SipMessage | Malformed, source: Source) -> None:
        """Called by the transport for every message; never raises, never blocks."""
        if isinstance(msg, Malformed):
            self._malformed(msg, source)
            return
        if not msg.is_request:
            self._spawn(self.calls.response(msg, source))
            return
        if self.guard.banned(source.ip):
            return
        to = parse_name_addr(msg.get("to") or "")
        in_dialog = to is not None and to.tag is not None
        if msg.method == "ACK":
            # The ACK of a 2xx travels the dialog; one of a non-2xx ends our transaction.
            if in_dialog:
                self._spawn(self._answer_in_dialog(msg, source))
            return
        key = transaction_key(msg)
        state, cached = self.transactions.begin(key)
        if state is TxState.completed and cached:
            RETRANSMISSIONS.inc()
            self._send(cached, source)
            return
        if state is TxState.proceeding:
            # Still working on the original; an INVITE is told so again (RFC 3261 17.2.1).
            if msg.method == "INVITE":
                self.respond(msg, source, Reply(100, "Trying"))
            return
        method = msg.method
        if method == "REGISTER":
            outcome = self.registrar.register_now(msg, source)
            if isinstance(outcome, Reply):
                self._reply(msg, source, key, outcome)
            else:
                self._spawn(self._answer(msg, source, key, outcome))
        elif method == "OPTIONS":
            self._reply(msg, source, key, self._options(msg))
        elif method == "CANCEL":
            self._reply(msg, source, key, self.calls.cancel(msg, source))
        elif in_dialog and method in IN_DIALOG:
            self._spawn(self._answer_in_dialog(msg, source, key))
        elif method == "INVITE":
            self._spawn(self._answer_call(msg, source, key))
        else:
            self._reply(msg, source, key, Reply(405, "Method Not Allowed", [("allow", ALLOW)]))

    def _options(self, msg: SipMessage) -> Reply:
        uri = parse_uri(msg.uri or "")
        if uri is None:
            return Reply(416, "Unsupported URI Scheme")
        return Reply(
            200,
            "OK",
            [("allow", ALLOW), ("accept", "application/sdp")],
        )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(
        self, msg: SipMessage, source: Source, key: TxKey, pending: Awaitable[Reply]
    ) -> None:
        try:
            reply = await pending
        except Exception:
            log.exception("sip: %s failed", msg.method)
            reply = Reply(500, "Server Internal Error")
        self._reply(msg, source, key, reply)

    async def _answer_call(self, msg: SipMessage, source: Source, key: TxKey) -> None:
        try:
            reply = await self.calls.invite(msg, source)
        except Exception:
            log.exception("sip: INVITE failed")
            reply = Reply(500, "Server Internal Error")
        if reply is not None:
            self._reply(msg, source, key, reply)

    async def _answer_in_dialog(
        self, msg: SipMessage, source: Source, key: TxKey | None = None
    ) -> None:
        try:
            reply = await self.calls.in_dialog(msg, source)
        except Exception:
            log.exception("sip: in-dialog %s failed", msg.method)
            reply = Reply(500, "Server Internal Error")
        if reply is not None and key is not None:
            self._reply(msg, source, key, reply)

    def respond(self, msg: SipMessage, source: Source, reply: Reply) -> bytes:
        """Sends the response to `msg` back where it came from; returns its bytes."""
        data = make_response(
            msg,
            reply.status,
            reply.reason,
            source_ip=source.ip,
            source_port=source.port,
            headers=reply.headers,
        ).encode()
        self._send(data, source)
        return data

    def _reply(self, msg: SipMessage, source: Source, key: TxKey, reply: Reply) -> None:
        """A response that ends the transaction is kept for its retransmissions."""
        data = self.respond(msg, source, reply)
        if reply.status >= 200:
            self.transactions.complete(key, data)

    def _send(self, data: bytes, source: Source) -> None:
        # Responses go back where the request came from (RFC 3581 symmetric response).
        self.transport.send(data, source.transport, source.ip, source.port, source.connection_id)

    def _malformed(self, bad: Malformed, source: Source) -> None:
        if bad.can_respond and bad.message is not None and not self.guard.banned(source.ip):
            MALFORMED.labels("yes").inc()
            response = make_response(
                bad.message,
                bad.status,
                _REASONS.get(bad.status, "Bad Request"),
                source_ip=source.ip,
                source_port=source.port,
                headers=[("warning", '399 - "{}"'.format(bad.reason.replace('"', "'")))],
            )
            self._send(response.encode(), source)
        else:
            MALFORMED.labels("no").inc()
        log.info("sip: malformed message from %s:%d: %s", source.ip, source.port, bad.reason)


_REASONS = {400: "Bad Request", 505: "Version Not Supported", 513: "Message Too Large"}
