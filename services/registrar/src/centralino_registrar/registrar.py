"""REGISTER processing, in the order of RFC 3261 section 10.3 (as Kamailio's registrar)."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import Counter

from centralino_proto.events import UnregisterReason

from .abuse import AbuseGuard
from .config import Settings
from .directory import CacheMiss, DeviceCredentials, Directory
from .location import (
    AorLock,
    Binding,
    Change,
    Location,
    registered_event,
    unregistered_event,
)
from .sip import digest
from .sip.digest import Credentials, Nonces, NonceState
from .sip.message import NameAddr, SipMessage, parse_auth, parse_name_addr, parse_uri
from .sip.transaction import http_date
from .sip.transport import Source

log = logging.getLogger("centralino.registrar.register")

REGISTERS = Counter("centralino_sip_register_total", "REGISTER requests answered", ["status"])

# Option tags this registrar implements (RFC 3261 8.2.2.3); "path" is not among them.
SUPPORTED: frozenset[str] = frozenset()

T = TypeVar("T")


@dataclass
class Reply:
    """The status, reason and extra headers of an answer to a request."""

    status: int
    reason: str
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Admitted:
    """A REGISTER that passed authentication: whose AoR, and its Contacts
    ("*" for a wildcard, None for a query)."""

    device: DeviceCredentials
    aor: str
    key: tuple[uuid.UUID, str]
    contacts: list[_Contact] | str | None


@dataclass(frozen=True)
class _Contact:
    uri: str
    expires: int
    q: float | None
    instance: str | None


class Registrar:
    """Authenticates REGISTERs and keeps the location of each address-of-record."""

    def __init__(
        self,
        *,
        settings: Settings,
        directory: Directory,
        location: Location,
        nonces: Nonces,
        guard: AbuseGuard,
    ) -> None:
        self.settings = settings
        self.directory = directory
        self.location = location
        self.nonces = nonces
        self.guard = guard

    def challenge(self, realm: str, *, stale: bool = False, proxy: bool = False) -> Reply:
        """401 (or 407 for a proxy) with a fresh nonce per offered algorithm."""
        nonce = self.nonces.issue(realm)
        name = "proxy-authenticate" if proxy else "www-authenticate"
        headers = [
            (name, digest.challenge(realm, nonce, algorithm, stale=stale))
            for algorithm in self.settings.sip_digest_algorithms
        ]
        if proxy:
            return Reply(407, "Proxy Authentication Required", headers)
        return Reply(401, "Unauthorized", headers)

    async def authenticate(
        self, req: SipMessage, source: Source, realm: str, tenant_id: uuid.UUID, *, proxy: bool
    ) -> DeviceCredentials | Reply:
        """The device whose digest credentials the request carries, or the reply to send."""
        return await _after_lookups(
            lambda: self.authenticate_now(req, source, realm, tenant_id, proxy=proxy)
        )

    def authenticate_now(
        self, req: SipMessage, source: Source, realm: str, tenant_id: uuid.UUID, *, proxy: bool
    ) -> DeviceCredentials | Reply:
        """`authenticate` from memory; CacheMiss (before anything is counted) when the
        device's credentials are not cached."""
        creds = self._credentials(req, realm, proxy=proxy)
        if isinstance(creds, Reply):
            return creds
        if creds is None:
            return self.challenge(realm, proxy=proxy)
        state = self.nonces.check(creds.nonce, realm)
        if state is NonceState.invalid:
            self.guard.failed(source.ip, creds.username, "bad_nonce")
            return self.challenge(realm, proxy=proxy)
        device = self.directory.device_now(tenant_id, creds.username)
        if device is None or not creds.verify(
            ha1=device.ha1[creds.algorithm], method=req.method or ""
        ):
            # Unknown user and wrong password look the same from outside.
            self.guard.failed(source.ip, f"{creds.username}@{realm}", "wrong_credentials")
            log.info("sip: failed digest for %s@%s from %s", creds.username, realm, source.ip)
            return self.challenge(realm, proxy=proxy)
        if state is NonceState.stale:
            return self.challenge(realm, stale=True, proxy=proxy)
        if not self.nonces.use_count(creds.nonce, creds.nonce_count()):
            # A replayed nonce count: the genuine client can retry with a fresh nonce.
            self.guard.failed(source.ip, creds.username, "replay")
            return self.challenge(realm, stale=True, proxy=proxy)
        return device

    @staticmethod
    def _credentials(req: SipMessage, realm: str, *, proxy: bool) -> Credentials | Reply | None:
        """The digest credentials for `realm` the request carries (None: it carries none)."""
        for value in req.all("proxy-authorization" if proxy else "authorization"):
            parsed = parse_auth(value)
            if parsed is None or parsed[0] != "digest":
                return Reply(400, "Bad Authorization Header")
            if parsed[1].get("realm", "").lower() != realm:
                continue
            return Credentials.from_params(parsed[1]) or Reply(400, "Bad Authorization Header")
        return None

    def register_now(self, req: SipMessage, source: Source) -> Reply | Awaitable[Reply]:
        """The answer to a REGISTER when it needs nothing but memory (a challenge, a
        refresh, a query, a refusal: most REGISTERs); else what answers it once the
        database has (a cache miss, a binding that appears or goes)."""
        outcome = self._register_now(req, source)
        if isinstance(outcome, Reply):
            REGISTERS.labels(str(outcome.status)).inc()
            return outcome
        return self._counted(outcome)

    async def _counted(self, pending: Awaitable[Reply]) -> Reply:
        reply = await pending
        REGISTERS.labels(str(reply.status)).inc()
        return reply

    def _register_now(self, req: SipMessage, source: Source) -> Reply | Awaitable[Reply]:
        try:
            admitted = self._admit(req, source)
        except CacheMiss:
            return self._register_after_lookups(req, source)
        if isinstance(admitted, Reply):
            return admitted
        lock = self.location.lock(admitted.key)
        if not lock.try_acquire():
            return self._register_locked(req, source, admitted)
        return self._planned(req, source, admitted, lock)

    async def _register_after_lookups(self, req: SipMessage, source: Source) -> Reply:
        admitted = await _after_lookups(lambda: self._admit(req, source))
        if isinstance(admitted, Reply):
            return admitted
        return await self._register_locked(req, source, admitted)

    async def _register_locked(self, req: SipMessage, source: Source, admitted: _Admitted) -> Reply:
        lock = self.location.lock(admitted.key)
        await lock.acquire()
        outcome = self._planned(req, source, admitted, lock)
        return outcome if isinstance(outcome, Reply) else await outcome

    def _planned(
        self, req: SipMessage, source: Source, admitted: _Admitted, lock: AorLock
    ) -> Reply | Awaitable[Reply]:
        """Plans under the AoR's lock, which the caller took: released here, or by the
        commit when the plan stores a change."""
        try:
            plan = self._plan(req, source, admitted)
        except BaseException:
            lock.release()
            raise
        if isinstance(plan, Change) and (plan.deletes or plan.events):
            return self._commit(admitted, plan, lock)
        try:
            if isinstance(plan, Reply):
                return plan
            for b in plan.upserts if plan is not None else ():
                self.location.refresh(b)  # kept in memory, written back later
            return self._bindings(admitted)
        finally:
            lock.release()

    async def _commit(self, admitted: _Admitted, plan: Change, lock: AorLock) -> Reply:
        """Stores a change to the AoR's bindings, all or nothing, then answers."""
        try:
            await self.location.commit(plan)
        except Exception:
            log.exception("sip: location write failed for %s", admitted.aor)
            return Reply(500, "Server Internal Error", [("retry-after", "5")])
        else:
            return self._bindings(admitted)
        finally:
            lock.release()

    def _bindings(self, admitted: _Admitted) -> Reply:
        """The 200: every binding of the AoR with its expires, plus Date."""
        now = time.time()
        headers = [
            ("contact", _render_binding(b, now))
            for b in sorted(self.location.bindings(admitted.key), key=lambda b: -(b.q or 0))
        ]
        headers.append(("date", http_date()))
        return Reply(200, "OK", headers)

    def _admit(self, req: SipMessage, source: Source) -> _Admitted | Reply:
        """RFC 3261 10.3 steps 1-6 from memory: the tenant, option tags, authentication,
        the right to the AoR, the Contacts. CacheMiss before any step has an effect."""
        ruri = parse_uri(req.uri or "")
        if ruri is None:
            return Reply(416, "Unsupported URI Scheme")
        to = parse_name_addr(req.get("to") or "")
        to_uri = parse_uri(to.uri) if to else None
        if to_uri is None or not to_uri.user:
            return Reply(
                404, "Not Found", [("warning", '399 - "To is not a SIP address-of-record"')]
            )
        # 1. The domain selects the tenant (a registrar addressed by IP goes by the To domain).
        tenant = self.directory.tenant_now(ruri.host)
        if tenant is None and _is_address(ruri.host):
            tenant = self.directory.tenant_now(to_uri.host)
        if tenant is None:
            return Reply(404, "Domain Not Served")
        # 2. Option tags.
        required = [t.strip() for t in req.all("require")]
        unsupported = [t for t in required if t and t.lower() not in SUPPORTED]
        if unsupported:
            return Reply(420, "Bad Extension", [("unsupported", ", ".join(unsupported))])
        # 3. Authentication.
        auth = self.authenticate_now(req, source, tenant.sip_realm, tenant.tenant_id, proxy=False)
        if isinstance(auth, Reply):
            return auth
        device = auth
        # 4. May this device register this address-of-record?
        if to_uri.host != tenant.sip_realm or to_uri.user not in (
            device.extension,
            device.username,
        ):
            self.guard.failed(source.ip, None, "foreign_aor")
            return Reply(
                403, "Forbidden", [("warning", '399 - "not allowed to register this AoR"')]
            )
        # 5. Contacts.
        contacts = self._contacts(req)
        if isinstance(contacts, Reply):
            return contacts
        return _Admitted(
            device=device,
            aor=f"sip:{device.extension}@{tenant.sip_realm}",
            key=(tenant.tenant_id, device.extension),
            contacts=contacts,
        )

    def _contacts(self, req: SipMessage) -> list[_Contact] | str | Reply | None:
        """The Contacts with their expiry; "*" for a wildcard; None for a query."""
        s = self.settings
        values = req.all("contact")
        if not values:
            return None
        header = req.get("expires")
        header_expires = int(header) if header is not None else None
        if "*" in values:
            if len(values) != 1 or header_expires != 0:
                return Reply(
                    400, "Bad Request", [("warning", '399 - "Contact * needs Expires: 0"')]
                )
            return "*"
        out: list[_Contact] = []
        for value in values:
            addr: NameAddr | None = parse_name_addr(value)
            if addr is None or parse_uri(addr.uri) is None:
                return Reply(400, "Bad Contact")
            raw = addr.params.get("expires")
            if raw is not None and not raw.isdigit():
                return Reply(400, "Bad Contact expires")
            expires = int(raw) if raw is not None else header_expires
            if expires is None:
                expires = s.sip_default_expires
            if 0 < expires < s.sip_min_expires:
                return Reply(423, "Interval Too Brief", [("min-expires", str(s.sip_min_expires))])
            q: float | None = None
            if "q" in addr.params:
                try:
                    q = float(addr.params["q"])
                except ValueError:
                    return Reply(400, "Bad Contact q")
                if not 0 <= q <= 1:
                    return Reply(400, "Bad Contact q")
            out.append(
                _Contact(
                    uri=addr.uri,
                    expires=min(expires, s.sip_max_expires),
                    q=q,
                    instance=addr.params.get("+sip.instance"),
                )
            )
        return out

    def _plan(self, req: SipMessage, source: Source, admitted: _Admitted) -> Reply | Change | None:
        """What the Contacts do to the AoR's bindings (RFC 3261 10.3 step 7), from memory
        and without doing it: a refusal, a Change (refreshes only, when it has neither
        deletes nor events), or None for a query."""
        contacts, device, aor, key = admitted.contacts, admitted.device, admitted.aor, admitted.key
        if contacts is None:
            return None
        call_id = req.call_id
        cseq, _ = req.cseq()
        now = time.time()
        current = self.location.bindings(key)
        adds: list[Binding] = []
        refreshes: list[Binding] = []
        removes: list[Binding] = []
        if contacts == "*":
            for b in current:
                if b.call_id == call_id and cseq <= b.cseq:
                    return Reply(400, "Bad Request", [("warning", '399 - "CSeq out of order"')])
                removes.append(b)
        else:
            assert isinstance(contacts, list)
            user_agent = (req.get("user-agent") or "")[:255] or None
            for contact in contacts:
                existing = _match(current, contact, call_id)
                if existing is not None:
                    if existing.call_id == call_id and cseq <= existing.cseq:
                        return Reply(400, "Bad Request", [("warning", '399 - "CSeq out of order"')])
                    if contact.expires == 0:
                        removes.append(existing)
                    else:
                        refreshes.append(
                            dataclasses.replace(
                                existing,
                                contact=contact.uri,
                                expires_at=now + contact.expires,
                                call_id=call_id,
                                cseq=cseq,
                                q=contact.q,
                                user_agent=user_agent,
                                source_ip=source.ip,
                                source_port=source.port,
                                transport=source.transport,
                                connection_id=source.connection_id,
                            )
                        )
                elif contact.expires > 0:
                    adds.append(
                        Binding(
                            binding_id=uuid.uuid4(),
                            tenant_id=device.tenant_id,
                            device_id=device.device_id,
                            username=device.username,
                            extension=device.extension,
                            aor=aor,
                            contact=contact.uri,
                            expires_at=now + contact.expires,
                            registered_at=now,
                            call_id=call_id,
                            cseq=cseq,
                            source_ip=source.ip,
                            source_port=source.port,
                            transport=source.transport,
                            q=contact.q,
                            user_agent=user_agent,
                            instance=contact.instance,
                            connection_id=source.connection_id,
                        )
                    )
            overflow = (
                len(current) - len(removes) + len(adds) - self.settings.sip_max_bindings_per_aor
            )
            if overflow > 0:
                # A phone that restarted re-registers its contact under a new Call-ID:
                # its old bindings make room first, oldest first.
                fresh = {a.contact for a in adds}
                gone = {b.binding_id for b in removes} | {b.binding_id for b in refreshes}
                stale = sorted(
                    (b for b in current if b.contact in fresh and b.binding_id not in gone),
                    key=lambda b: b.registered_at,
                )
                removes.extend(stale[:overflow])
                if len(current) - len(removes) + len(adds) > self.settings.sip_max_bindings_per_aor:
                    return Reply(503, "Too Many Registered Contacts", [("retry-after", "60")])
        return Change(
            upserts=adds + refreshes,
            deletes=removes,
            events=[registered_event(b) for b in adds]
            + [unregistered_event(b, UnregisterReason.removed) for b in removes],
            durable=False,
        )


async def _after_lookups(step: Callable[[], T]) -> T:
    """Runs a synchronous step, loading whatever it missed from the database and trying
    again (a step raises CacheMiss before it has any effect). A REGISTER misses at most
    its tenant and its device."""
    for _ in range(3):
        try:
            return step()
        except CacheMiss as miss:
            await miss.load()
    return step()  # an entry evicted each time in between: the CacheMiss is the 500


def _match(current: list[Binding], contact: _Contact, call_id: str) -> Binding | None:
    """The binding a Contact updates: same instance (RFC 5626), else same URI and Call-ID."""
    if contact.instance:
        for b in current:
            if b.instance == contact.instance:
                return b
    for b in current:
        if b.contact == contact.uri and b.call_id == call_id:
            return b
    return None


def _render_binding(b: Binding, now: float) -> str:
    value = f"<{b.contact}>;expires={b.expires_in(now)}"
    if b.q is not None:
        value += f";q={b.q:g}"
    if b.instance:
        value += f';+sip.instance="{b.instance}"'
    return value


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True
