"""The per-call decision (POST /v1/route), read from the compiled plans only.

Order for a call from an extension (the way Kamailio's dialplan + permissions
modules would chain it): emergency, own extensions, disabled-station bar,
inter-company digit, Italian numbering plan, on-net index, class permission.
A call from the carrier starts at the DID, picks the day or night target and
follows it (IVR input arrives as `digits`: "1", "#409", "t" for the timeout,
as Asterisk names it).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from centralino_proto.events import CallClass

from .models import Target, TargetKind
from .numbering import EMERGENCY, NumberingError, classify, clean
from .plan import DialPlans, Did, Menu, Rule, Station, TenantPlan

# Unconditional forwards and IVR hops followed at most this many times
# (the API refuses loops; this only bounds a plan changed under our feet).
MAX_HOPS = 8
TIMEOUT_INPUT = "t"

CLASS_LABEL = {
    CallClass.national_fixed: "national",
    CallClass.mobile: "mobile",
    CallClass.international: "international",
    CallClass.premium: "premium-rate",
    CallClass.toll_free: "toll-free",
    CallClass.shared_cost: "shared-cost",
}


class RouteAction(StrEnum):
    extension = "extension"
    inter_company = "inter_company"
    on_net = "on_net"
    pstn = "pstn"
    ivr = "ivr"
    voicemail = "voicemail"
    reject = "reject"


class RouteRequest(BaseModel):
    """A call to route: from an extension (outbound/internal) or from the carrier to a DID."""

    model_config = ConfigDict(extra="ignore")

    tenant_id: uuid.UUID | None = None
    extension: str | None = Field(default=None, max_length=32)
    digits: str | None = Field(default=None, max_length=64)
    inbound_did: str | None = Field(default=None, max_length=32)
    at: AwareDatetime | None = None
    forwarded_from: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _which_call(self) -> RouteRequest:
        if self.extension is None and self.forwarded_from is None:
            if self.inbound_did is None:
                raise ValueError(
                    "either extension (a call from a station) or inbound_did is needed"
                )
        elif self.tenant_id is None:
            raise ValueError("tenant_id is needed for a call from an extension")
        return self


class RouteTarget(BaseModel):
    tenant_id: uuid.UUID
    extension: str


class FailureRule(BaseModel):
    kind: str
    extension: str | None = None
    e164: str | None = None
    after_seconds: int | None = None
    # Whose rule it is: the tenant to route the forwarded leg for (forwarded_from's tenant),
    # not always the caller's (inter-company and on-net targets).
    tenant_id: uuid.UUID | None = None


class FailureRules(BaseModel):
    busy: FailureRule | None = None
    no_answer: FailureRule | None = None
    unavailable: FailureRule | None = None


class IvrPrompt(BaseModel):
    menu_id: uuid.UUID
    prompt: str
    timeout_seconds: int


class Reject(BaseModel):
    status: int
    reason: str


class RouteDecision(BaseModel):
    """The answer: what to do with the call, its class, who pays, whom to ring."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    action: RouteAction
    call_class: CallClass = Field(alias="class")
    e164: str | None = None
    tenant_id: uuid.UUID | None = None
    extension: str | None = None
    targets: list[RouteTarget] = Field(default_factory=list)
    failure_rules: FailureRules = Field(default_factory=FailureRules)
    ivr: IvrPrompt | None = None
    reject: Reject | None = None

    def body(self) -> dict[str, object]:
        """The JSON body; `reject` only when the action is reject (the contract)."""
        return self.model_dump(
            mode="json", exclude_none=False, exclude={"reject"} if self.reject is None else None
        )


class _Payer:
    """Whose call this is for billing: a tenant and (when there is one) a station."""

    __slots__ = ("extension", "tenant_id")

    def __init__(self, tenant_id: uuid.UUID, extension: str | None) -> None:
        self.tenant_id = tenant_id
        self.extension = extension


def _reject(status: int, reason: str, call_class: CallClass, payer: _Payer | None) -> RouteDecision:
    return RouteDecision(
        action=RouteAction.reject,
        call_class=call_class,
        tenant_id=payer.tenant_id if payer else None,
        extension=payer.extension if payer else None,
        reject=Reject(status=status, reason=reason),
    )


def _keyed_input(digits: str | None) -> str | None:
    """What the caller keyed in a menu: one key, "#" + extension, or "t" (timeout).

    Anything else (the called number itself, as a carrier leg carries it) is no input.
    """
    if not digits:
        return None
    keyed = clean(digits)
    if len(keyed) == 1 or keyed.startswith("#") or keyed == TIMEOUT_INPUT:
        return keyed
    return None


def _emergency_in_full(digits: str) -> bool:
    """112 dialled as +39112 or 0039112."""
    for prefix in ("+39", "0039"):
        if digits.startswith(prefix) and digits[len(prefix) :] in EMERGENCY:
            return True
    return False


class Router:
    """Answers route requests from the compiled plans."""

    def __init__(self, plans: DialPlans) -> None:
        self.plans = plans

    def decide(self, request: RouteRequest) -> RouteDecision:
        """Routes one call."""
        at = request.at or datetime.now(UTC)
        if request.forwarded_from is not None or request.extension is not None:
            return self._outbound(request, at)
        return self._inbound(request, at)

    # -- from a station -----------------------------------------------------

    def _outbound(self, request: RouteRequest, at: datetime) -> RouteDecision:
        assert request.tenant_id is not None
        tenant = self.plans.tenants.get(request.tenant_id)
        if tenant is None:
            return _reject(404, f"unknown tenant {request.tenant_id}", CallClass.internal, None)
        # A forwarded leg is placed, and paid, by the forwarding extension.
        calling = request.forwarded_from or request.extension
        caller = tenant.stations.get(calling or "")
        if caller is None:
            return _reject(
                404, f"no extension {calling} in {tenant.slug}", CallClass.internal, None
            )
        payer = _Payer(tenant.tenant_id, caller.number)
        digits = clean(request.digits or "")
        if not digits:
            return _reject(484, "no digits dialled", CallClass.internal, payer)
        if digits in EMERGENCY or _emergency_in_full(digits):
            # Always allowed: disabled stations, suspended tenants, no permission needed.
            return RouteDecision(
                action=RouteAction.pstn,
                call_class=CallClass.emergency,
                e164=classify(digits).e164,
                tenant_id=payer.tenant_id,
                extension=payer.extension,
            )
        if not tenant.active:
            return _reject(403, f"tenant {tenant.slug} is suspended", CallClass.internal, payer)
        callee = tenant.stations.get(digits)
        if callee is not None:
            return self._ring(
                tenant, callee, at, RouteAction.extension, CallClass.internal, payer, 0
            )
        if not caller.enabled:
            return _reject(
                403,
                f"extension {caller.number} is disabled: only emergency and internal calls",
                CallClass.internal,
                payer,
            )
        linked = self._inter_company(tenant, digits)
        if linked is not None:
            other, station = linked
            if not other.active:
                return _reject(
                    480, f"{other.slug} is not taking calls", CallClass.inter_company, payer
                )
            return self._ring(
                other, station, at, RouteAction.inter_company, CallClass.inter_company, payer, 0
            )
        try:
            number = classify(digits)
        except NumberingError as exc:
            reason = exc.reason
            if exc.status == 404 and digits.isdigit() and 2 <= len(digits) <= 6:
                reason = f"no extension {digits} in {tenant.slug}"
            return _reject(exc.status, reason, CallClass.internal, payer)
        did = self.plans.did_index.get(number.e164)
        if did is not None:
            return self._on_net(did, number.e164, at, payer, 0)
        if number.call_class is not CallClass.emergency and number.call_class not in caller.allowed:
            return _reject(
                403,
                f"{CLASS_LABEL[number.call_class]} calls not permitted from extension {caller.number}",
                number.call_class,
                payer,
            )
        return RouteDecision(
            action=RouteAction.pstn,
            call_class=number.call_class,
            e164=number.e164,
            tenant_id=payer.tenant_id,
            extension=payer.extension,
        )

    def _inter_company(self, tenant: TenantPlan, digits: str) -> tuple[TenantPlan, Station] | None:
        """Link digit + extension of another member of the tenant's link group."""
        if tenant.link_group is None or len(digits) < 3:
            return None
        members = self.plans.groups.get(tenant.link_group)
        other_id = members.get(digits[0]) if members else None
        if other_id is None or other_id == tenant.tenant_id:
            return None
        other = self.plans.tenants.get(other_id)
        station = other.stations.get(digits[1:]) if other else None
        return (other, station) if other is not None and station is not None else None

    # -- from the carrier ---------------------------------------------------

    def _inbound(self, request: RouteRequest, at: datetime) -> RouteDecision:
        assert request.inbound_did is not None
        dialled = clean(request.inbound_did)
        # Carriers send the called number as +39..., 39... (no plus) or 06...
        did = self.plans.did_index.get(dialled if dialled.startswith("+") else "+" + dialled)
        if did is not None:
            e164 = did.e164
        else:
            try:
                e164 = classify(dialled).e164
            except NumberingError:
                return _reject(
                    404, f"{request.inbound_did} is not a number", CallClass.internal, None
                )
            did = self.plans.did_index.get(e164)
        if did is None or (request.tenant_id is not None and request.tenant_id != did.tenant_id):
            return _reject(404, f"{e164} is not assigned", CallClass.internal, None)
        owner = self.plans.tenants[did.tenant_id]
        payer = _Payer(owner.tenant_id, None)
        if not owner.active:
            return _reject(480, f"{e164} is temporarily unavailable", CallClass.internal, payer)
        decision = self._to_target(
            owner,
            did.target_at(at),
            at,
            RouteAction.extension,
            CallClass.internal,
            payer,
            0,
            _keyed_input(request.digits),
        )
        if decision.e164 is None:
            decision.e164 = e164
        return decision

    # -- shared -------------------------------------------------------------

    def _on_net(self, did: Did, e164: str, at: datetime, payer: _Payer, hops: int) -> RouteDecision:
        """Another customer's number: routed inside the platform, free."""
        owner = self.plans.tenants.get(did.tenant_id)
        if owner is None or not owner.active:
            return _reject(480, f"{e164} is temporarily unavailable", CallClass.on_net, payer)
        decision = self._to_target(
            owner,
            did.target_at(at),
            at,
            RouteAction.on_net,
            CallClass.on_net,
            payer,
            hops + 1,
            None,
        )
        if decision.e164 is None:
            decision.e164 = e164
        return decision

    def _to_target(
        self,
        owner: TenantPlan,
        target: Target,
        at: datetime,
        action: RouteAction,
        call_class: CallClass,
        payer: _Payer,
        hops: int,
        ivr_input: str | None,
    ) -> RouteDecision:
        """Follows a DID, IVR or failure target of `owner`."""
        if hops > MAX_HOPS:
            return _reject(482, "routing loop", call_class, payer)
        kind = target.kind
        if kind is TargetKind.extension or kind is TargetKind.operator:
            number = target.extension if kind is TargetKind.extension else owner.operator
            station = owner.stations.get(number or "")
            if station is None:
                return _reject(480, f"nobody to ring at {owner.slug}", call_class, payer)
            return self._ring(owner, station, at, action, call_class, payer, hops)
        if kind is TargetKind.voicemail:
            return RouteDecision(
                action=RouteAction.voicemail,
                call_class=call_class,
                tenant_id=payer.tenant_id,
                extension=payer.extension or target.extension,
                targets=[RouteTarget(tenant_id=owner.tenant_id, extension=target.extension or "")],
            )
        if kind is TargetKind.ivr:
            menu = owner.menus.get(target.menu_id) if target.menu_id else None
            if menu is None:
                return _reject(480, f"IVR menu of {owner.slug} is gone", call_class, payer)
            if ivr_input:
                return self._ivr_input(owner, menu, ivr_input, at, call_class, payer, hops)
            return RouteDecision(
                action=RouteAction.ivr,
                call_class=call_class,
                tenant_id=payer.tenant_id,
                extension=payer.extension,
                ivr=IvrPrompt(
                    menu_id=menu.menu_id, prompt=menu.prompt, timeout_seconds=menu.timeout_seconds
                ),
            )
        assert target.e164 is not None
        # The tenant forwards its number outside: the tenant pays that leg.
        return self._external(owner, None, target.e164, at, _Payer(owner.tenant_id, None), hops)

    def _ivr_input(
        self,
        owner: TenantPlan,
        menu: Menu,
        digits: str,
        at: datetime,
        call_class: CallClass,
        payer: _Payer,
        hops: int,
    ) -> RouteDecision:
        if digits == TIMEOUT_INPUT:
            if menu.timeout_target is None:
                return _reject(480, "no choice made", call_class, payer)
            return self._to_target(
                owner,
                menu.timeout_target,
                at,
                RouteAction.extension,
                call_class,
                payer,
                hops + 1,
                None,
            )
        if digits.startswith("#"):
            extension = digits[1:]
            station = owner.stations.get(extension)
            if station is not None and menu.may_direct_dial(extension):
                return self._ring(
                    owner, station, at, RouteAction.extension, call_class, payer, hops
                )
        elif (option := menu.options.get(digits)) is not None:
            return self._to_target(
                owner, option, at, RouteAction.extension, call_class, payer, hops + 1, None
            )
        if menu.invalid_target is not None:
            return self._to_target(
                owner,
                menu.invalid_target,
                at,
                RouteAction.extension,
                call_class,
                payer,
                hops + 1,
                None,
            )
        return _reject(404, f"{digits} is not a choice of this menu", call_class, payer)

    def _ring(
        self,
        tenant: TenantPlan,
        station: Station,
        at: datetime,
        action: RouteAction,
        call_class: CallClass,
        payer: _Payer,
        hops: int,
    ) -> RouteDecision:
        """Rings a station, unless it forwards everything elsewhere."""
        rule = station.unconditional
        if rule is not None:
            if hops >= MAX_HOPS:
                return _reject(482, "forwarding loop", call_class, payer)
            if rule.kind == "voicemail":
                return RouteDecision(
                    action=RouteAction.voicemail,
                    call_class=call_class,
                    tenant_id=payer.tenant_id,
                    extension=payer.extension or station.number,
                    targets=[RouteTarget(tenant_id=tenant.tenant_id, extension=station.number)],
                )
            if rule.kind == "extension":
                following = tenant.stations.get(rule.extension or "")
                if following is not None:
                    return self._ring(tenant, following, at, action, call_class, payer, hops + 1)
            elif rule.e164 is not None:
                return self._external(
                    tenant,
                    station,
                    rule.e164,
                    at,
                    _Payer(tenant.tenant_id, station.number),
                    hops + 1,
                )
        return RouteDecision(
            action=action,
            call_class=call_class,
            tenant_id=payer.tenant_id,
            extension=payer.extension or station.number,
            targets=[RouteTarget(tenant_id=tenant.tenant_id, extension=station.number)],
            failure_rules=FailureRules(
                busy=self._failure(tenant, station, station.busy),
                no_answer=self._failure(tenant, station, station.no_answer),
                unavailable=self._failure(tenant, station, station.unavailable),
            ),
        )

    def _external(
        self,
        tenant: TenantPlan,
        station: Station | None,
        e164: str,
        at: datetime,
        payer: _Payer,
        hops: int,
    ) -> RouteDecision:
        """A forward to an outside number, placed (and paid) by the forwarding station."""
        try:
            number = classify(e164)
        except NumberingError as exc:
            return _reject(exc.status, exc.reason, CallClass.internal, payer)
        did = self.plans.did_index.get(number.e164)
        if did is not None:
            return self._on_net(did, number.e164, at, payer, hops)
        if station is not None and not self._may_forward_to(station, number.call_class):
            return _reject(
                403,
                f"forwarding from extension {station.number} to {CLASS_LABEL.get(number.call_class, number.call_class)} numbers not permitted",
                number.call_class,
                payer,
            )
        return RouteDecision(
            action=RouteAction.pstn,
            call_class=number.call_class,
            e164=number.e164,
            tenant_id=payer.tenant_id,
            extension=payer.extension,
        )

    @staticmethod
    def _may_forward_to(station: Station, call_class: CallClass) -> bool:
        if call_class is CallClass.emergency:
            return True
        return station.enabled and call_class in station.allowed

    def _failure(
        self, tenant: TenantPlan, station: Station, rule: Rule | None
    ) -> FailureRule | None:
        """A failure rule the registrar may follow; one the station may not place is left out."""
        if rule is None:
            return None
        if rule.kind == "external" and rule.e164 is not None:
            if rule.e164 not in self.plans.did_index and (
                rule.call_class is None or not self._may_forward_to(station, rule.call_class)
            ):
                return None
            kind = "external"
        else:
            kind = rule.kind
        return FailureRule(
            kind=kind,
            extension=rule.extension,
            e164=rule.e164,
            after_seconds=rule.after_seconds,
            tenant_id=tenant.tenant_id,
        )
