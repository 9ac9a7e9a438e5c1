"""One trace id links an HTTP request, the event it caused and the consumer's handling."""

import uuid
from pathlib import Path
from typing import Any, ClassVar

from fastapi import APIRouter
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncSession

from centralino_proto.db import make_engine, plumbing_metadata
from centralino_proto.events import Envelope, UserDeleted
from centralino_proto.service import create_service_app
from centralino_proto.settings import ServiceSettings
from centralino_proto.telemetry import setup_tracing
from centralino_proto.testing import TokenMint, serve_app, until
from centralino_proto.web import SessionDep


class DemoSettings(ServiceSettings):
    service_name: ClassVar[str] = "proto-demo"


async def test_request_event_and_handling_share_one_trace(
    bus_db: str, bus_names: dict[str, str]
) -> None:
    exporter = InMemorySpanExporter()
    setup_tracing("proto-demo").add_span_processor(SimpleSpanProcessor(exporter))  # type: ignore[attr-defined]
    engine = make_engine(bus_db)
    async with engine.begin() as conn:
        await conn.run_sync(plumbing_metadata.create_all, checkfirst=True)
    await engine.dispose()

    router = APIRouter()

    @router.post("/v1/users/{user_id}/delete")
    async def delete_user(user_id: uuid.UUID, session: SessionDep) -> dict[str, str]:
        runtime = router.runtime  # type: ignore[attr-defined]
        await runtime.outbox.add(
            session, UserDeleted(user_id=user_id, tenant_id=None), tenant_id=None
        )
        await session.commit()
        return {"status": "deleted"}

    handled: list[Envelope[Any]] = []

    async def on_deleted(session: AsyncSession, envelope: Envelope[Any]) -> None:
        handled.append(envelope)

    settings = DemoSettings(
        environment="test", database_url=bus_db, migrate_on_start=False, **bus_names
    )
    app = create_service_app(
        settings=settings,
        migrations_dir=Path("/nonexistent"),
        routers=[router],
        description="trace test",
        tenant_directory=False,
        subscribe=lambda rt: rt.consumer.subscribe(UserDeleted, on_deleted),
        verifier=TokenMint().verifier(),
    )
    router.runtime = app.state.runtime  # type: ignore[attr-defined]
    async with serve_app(app) as client:
        await app.state.runtime.consumer.wait_started()
        response = await client.post(f"/v1/users/{uuid.uuid4()}/delete")
        assert response.status_code == 200
        await until(lambda: handled, timeout=20)

    spans = exporter.get_finished_spans()
    server = next(s for s in spans if s.kind == SpanKind.SERVER and "delete" in s.name)
    publish = next(
        s for s in spans if s.kind == SpanKind.PRODUCER and s.name == "user.deleted publish"
    )
    process = next(
        s for s in spans if s.kind == SpanKind.CONSUMER and s.name == "user.deleted process"
    )
    trace_id = server.context.trace_id
    assert publish.context.trace_id == trace_id
    assert process.context.trace_id == trace_id
    assert handled[0].correlation_id == format(trace_id, "032x")
