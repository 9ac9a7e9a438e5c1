import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import pytest

from centralino_portability.config import Settings
from centralino_portability.main import create_app
from centralino_portability.migration_code import check_character
from centralino_proto.testing import ServiceHarness, service_under_test

ROME_TEMPORARY = "+39062022600"
# A valid codice fiscale and partita IVA (checksums right).
TAX_CODE = "RSSMRA85T10A562S"
VAT_NUMBER = "07643520567"


class FakeClock:
    """The injectable clock: tests move time; the donor and the timeline follow it."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    # Monday 21 September 2026, 09:00 in Rome.
    return FakeClock(datetime(2026, 9, 21, 7, 0, tzinfo=UTC))


@pytest.fixture
async def harness(clock: FakeClock) -> AsyncIterator[ServiceHarness]:
    """The portability app on a fresh database and a private exchange, its clock in hand."""
    async with service_under_test(
        partial(create_app, clock=clock),
        Settings,
        db_name="test_portability",
        donor_poll_seconds=0,
    ) as h:
        yield h


def code_for(national: str, cow: str = "TLC", cos: str = "001") -> str:
    """A well-formed migration code for a number (COR = the number, check character right)."""
    body = f"{cow}{national}{cos}"
    return body + check_character(body)


def rome(n: int) -> tuple[str, str]:
    """A distinct Rome number: (E.164, national)."""
    national = f"0620{n:06d}"
    return "+39" + national, national


@dataclass
class Portal:
    """A tenant with its admin's token, and short-hands for the port-request API."""

    harness: ServiceHarness
    slug: str
    tenant_id: uuid.UUID
    headers: dict[str, str]
    operator: dict[str, str] = field(default_factory=dict)
    counter: int = 0

    @property
    def client(self) -> httpx.AsyncClient:
        return self.harness.client

    @property
    def base(self) -> str:
        return f"/v1/tenants/{self.slug}/port-requests"

    def next_number(self) -> tuple[str, str]:
        self.counter += 1
        return rome(self.counter)

    def single(self, **overrides: Any) -> dict[str, Any]:
        e164, national = self.next_number()
        body: dict[str, Any] = {
            "line_type": "analog",
            "customer": {"name": "Rossi S.r.l.", "vat_number": VAT_NUMBER},
            "numbers": [{"kind": "single", "number": e164, "migration_code": code_for(national)}],
            "temporary_number": ROME_TEMPORARY,
            "donor_operator": "TIM",
        }
        body.update(overrides)
        return body

    async def create(self, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.client.post(
            self.base, json=body or self.single(), headers=self.headers
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def sign(self, request_id: str, content: bytes | None = None) -> httpx.Response:
        content = content or await self.consent(request_id)
        return await self.client.post(
            f"{self.base}/{request_id}/signed-consent",
            files={"file": ("signed.pdf", content, "application/pdf")},
            headers=self.headers,
        )

    async def consent(self, request_id: str) -> bytes:
        response = await self.client.get(f"{self.base}/{request_id}/consent", headers=self.headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/pdf"
        return response.content

    async def move(
        self, request_id: str, to: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> httpx.Response:
        return await self.client.post(
            f"{self.base}/{request_id}/transitions",
            json={"to": to, **extra},
            headers=headers or self.operator,
        )

    async def get(self, request_id: str) -> dict[str, Any]:
        response = await self.client.get(f"{self.base}/{request_id}", headers=self.headers)
        assert response.status_code == 200, response.text
        got: dict[str, Any] = response.json()
        return got


@pytest.fixture
async def portal(harness: ServiceHarness) -> Portal:
    tenant = await harness.add_tenant("rossi-roma")
    return Portal(
        harness=harness,
        slug=tenant.slug,
        tenant_id=tenant.tenant_id,
        headers=harness.mint.headers("tenant_admin", tenant_id=tenant.tenant_id),
        operator=harness.mint.headers("operator"),
    )
