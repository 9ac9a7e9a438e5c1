"""Donor operators: the adapter interface, the simulated donor, and the sync that applies them.

A real adapter speaks the donor's interface (the inter-operator migration platform);
the simulated one is deterministic, for development and tests: it decides from the
request and from its injectable clock, one step per business day.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from centralino_proto.service import ServiceRuntime

from . import calendar, migration_code
from .config import Settings
from .models import LineType, PortRequest, PortState, RejectReason
from .numbers import NumberProblem, parse
from .ports import Clock, local_date, numbers_of, transition

log = logging.getLogger("centralino.portability.donors")

S = PortState
# The states in which the donor still has something to say.
WITH_DONOR = (S.submitted, S.taken_in_charge, S.unlocked, S.scheduled, S.completed)


@dataclass(frozen=True)
class OrderNumber:
    e164: str
    kind: str
    migration_code: str


@dataclass(frozen=True)
class PortOrder:
    """What a donor sees of a port request."""

    id: uuid.UUID
    state: PortState
    line_type: LineType
    customer_name: str
    tax_code: str | None
    vat_number: str | None
    numbers: tuple[OrderNumber, ...]
    submitted_on: date | None
    state_since: date
    expected_completion: date | None
    expected_closure: date | None
    reschedules: int


@dataclass(frozen=True)
class DonorUpdate:
    """One step the donor took."""

    to: PortState
    reason: RejectReason | None = None
    comment: str | None = None
    expected_completion: date | None = None
    donor_reference: str | None = None


class DonorAdapter(abc.ABC):
    """Talks to one donor operator about the requests it handles."""

    name: str

    @abc.abstractmethod
    async def next_update(self, order: PortOrder) -> DonorUpdate | None:
        """The donor's next step on an order, or None while it has nothing new."""


@dataclass(frozen=True)
class DonorLine:
    """What the simulated donor's own records say about one of its lines."""

    holder_tax_id: str | None = None
    administrative_change: bool = False
    # Business days the donor moves the date by, once, when it comes.
    reschedule_by: int = 0


# The simulated donor's reading of the service code (COS); others say nothing on line type.
SIMULATED_COS_LINE_TYPES = {"001": LineType.analog, "002": LineType.isdn, "003": LineType.isdn}


@dataclass
class SimulatedDonor(DonorAdapter):
    """A deterministic donor: a step a business day, rejecting what a donor would reject.

    It rejects a migration code whose check character is wrong or whose COR is not the
    number (its convention), a COS that contradicts the line type, a number it does not
    know (`unknown`), a line under an administrative change, a holder whose codice
    fiscale or partita IVA is not the one on its records.
    """

    clock: Clock
    settings: Settings
    lines: Mapping[str, DonorLine] = field(default_factory=dict)
    unknown: frozenset[str] = frozenset()
    name: str = "simulated"

    def _today(self) -> date:
        return local_date(self.clock(), self.settings)

    def _due(self, since: date, days: int) -> bool:
        return self._today() >= calendar.add_business_days(since, days)

    def refusal(self, order: PortOrder) -> tuple[RejectReason, str] | None:
        """Why the donor refuses an order, if it does."""
        for number in order.numbers:
            result = migration_code.validate(
                number.migration_code, cos_values=self.settings.migration_cos_values
            )
            parts = result.parts
            if not result.valid or parts["check_character"] != parts["expected_check_character"]:
                return (
                    RejectReason.invalid_migration_code,
                    f"{number.e164}: migration code not valid",
                )
            try:
                national = parse(number.e164).national
            except NumberProblem:
                return RejectReason.incomplete_number, f"{number.e164}: incomplete number"
            if number.kind != "gnr" and parts["cor"] != national:
                return (
                    RejectReason.invalid_migration_code,
                    f"{number.e164}: the migration code is for resource {parts['cor']}",
                )
            expected_line = SIMULATED_COS_LINE_TYPES.get(parts["cos"] or "")
            if expected_line is not None and expected_line is not order.line_type:
                return (
                    RejectReason.wrong_line_type,
                    f"{number.e164}: the line is {expected_line}, not {order.line_type}",
                )
            if number.e164 in self.unknown:
                return RejectReason.unknown_number, f"{number.e164}: not a line of this operator"
            line = self.lines.get(number.e164)
            if line is None:
                continue
            if line.administrative_change:
                return (
                    RejectReason.administrative_change,
                    f"{number.e164}: an administrative change is in progress",
                )
            if line.holder_tax_id and line.holder_tax_id not in (order.tax_code, order.vat_number):
                return RejectReason.identity_mismatch, f"{number.e164}: the holder is someone else"
        return None

    async def next_update(self, order: PortOrder) -> DonorUpdate | None:
        if order.state is S.submitted and self._due(order.state_since, 1):
            refused = self.refusal(order)
            if refused:
                return DonorUpdate(S.rejected, reason=refused[0], comment=refused[1])
            return DonorUpdate(
                S.taken_in_charge,
                comment="taken in charge by the donor",
                donor_reference=f"SIM-{order.id.hex[:10].upper()}",
            )
        if order.state is S.taken_in_charge and self._due(order.state_since, 1):
            return DonorUpdate(S.unlocked, comment="number unlocked by the donor")
        if order.state is S.unlocked:
            base = order.submitted_on or order.state_since
            completion = max(
                calendar.add_business_days(base, self.settings.port_business_days),
                calendar.add_business_days(self._today(), 1),
            )
            return DonorUpdate(S.scheduled, expected_completion=completion, comment="date agreed")
        if (
            order.state is S.scheduled
            and order.expected_completion is not None
            and self._today() >= order.expected_completion
        ):
            delay = max(
                (self.lines.get(n.e164, DonorLine()).reschedule_by for n in order.numbers),
                default=0,
            )
            if delay and order.reschedules == 0:
                return DonorUpdate(
                    S.scheduled,
                    expected_completion=calendar.add_business_days(
                        order.expected_completion, delay
                    ),
                    comment="the donor moved the date",
                )
            return DonorUpdate(S.completed, comment="number ported")
        if (
            order.state is S.completed
            and order.expected_closure is not None
            and self._today() >= order.expected_closure
        ):
            return DonorUpdate(S.closed, comment="procedure closed")
        return None


async def order_of(*, session: AsyncSession, request: PortRequest, settings: Settings) -> PortOrder:
    """The donor's view of a request."""
    numbers = await numbers_of(session=session, request_id=request.id)
    return PortOrder(
        id=request.id,
        state=PortState(request.state),
        line_type=LineType(request.line_type),
        customer_name=request.customer_name,
        tax_code=request.tax_code,
        vat_number=request.vat_number,
        numbers=tuple(OrderNumber(n.e164, n.kind, n.migration_code) for n in numbers),
        submitted_on=local_date(request.submitted_at, settings) if request.submitted_at else None,
        state_since=local_date(request.state_changed_at, settings),
        expected_completion=request.expected_completion,
        expected_closure=request.expected_closure,
        reschedules=request.reschedules,
    )


async def sync_with_donors(
    *,
    runtime: ServiceRuntime,
    donors: Mapping[str, DonorAdapter],
    settings: Settings,
    clock: Clock,
    max_steps: int = 10,
) -> int:
    """Applies every step the donors took on open requests; returns how many."""
    async with runtime.sessionmaker() as session:
        ids = list(
            (
                await session.execute(
                    select(col(PortRequest.id)).where(
                        col(PortRequest.state).in_(WITH_DONOR),
                        col(PortRequest.donor).in_(list(donors)),
                    )
                )
            ).scalars()
        )
    applied = 0
    for request_id in ids:
        # One request per transaction; a request another worker holds is skipped.
        async with runtime.sessionmaker() as session, session.begin():
            request = (
                await session.execute(
                    select(PortRequest)
                    .where(col(PortRequest.id) == request_id)
                    .with_for_update(skip_locked=True)
                )
            ).scalar_one_or_none()
            if request is None:
                continue
            donor = donors[request.donor]
            for _ in range(max_steps):
                if PortState(request.state) not in WITH_DONOR:
                    break
                update = await donor.next_update(
                    await order_of(session=session, request=request, settings=settings)
                )
                if update is None:
                    break
                await transition(
                    session=session,
                    outbox=runtime.outbox,
                    request=request,
                    to=update.to,
                    actor=f"donor:{donor.name}",
                    settings=settings,
                    now=clock(),
                    comment=update.comment,
                    reason=update.reason,
                    expected_completion=update.expected_completion,
                    donor_reference=update.donor_reference,
                )
                applied += 1
    return applied


async def run_sync_loop(
    *, runtime: ServiceRuntime, donors: Mapping[str, DonorAdapter], settings: Settings, clock: Clock
) -> None:
    """Synchronises with the donors every `donor_poll_seconds` until cancelled."""
    while True:
        try:
            await sync_with_donors(runtime=runtime, donors=donors, settings=settings, clock=clock)
        except Exception:
            # A donor or the database down for a while: try again next round.
            log.exception("donor sync failed")
        await asyncio.sleep(settings.donor_poll_seconds)
