"""The portability service's app factory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from fastapi import FastAPI, Request, Response

from centralino_proto.auth import JWKSVerifier
from centralino_proto.service import ServiceRuntime, create_service_app
from centralino_proto.web import Problem

from . import tenant_numbers
from .api import router
from .config import Settings
from .donors import DonorAdapter, SimulatedDonor, run_sync_loop
from .ports import Clock

MIGRATIONS = Path(__file__).parent / "migrations"
# Room for the multipart boundaries and headers around an attachment.
UPLOAD_ENVELOPE_BYTES = 64 * 1024


def utc_now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings | None = None,
    *,
    verifier: JWKSVerifier | None = None,
    clock: Clock | None = None,
    donors: Mapping[str, DonorAdapter] | None = None,
) -> FastAPI:
    """Builds the portability app; tests inject the clock and the donor adapters."""
    settings = settings or Settings()
    clock = clock or utc_now
    adapters: Mapping[str, DonorAdapter] = donors or {
        "simulated": SimulatedDonor(clock=clock, settings=settings)
    }
    if settings.donor_adapter not in adapters:
        raise ValueError(
            f"DONOR_ADAPTER {settings.donor_adapter!r} is not one of {sorted(adapters)}"
        )

    async def on_start(runtime: ServiceRuntime) -> None:
        runtime.extras["clock"] = clock
        runtime.extras["donors"] = adapters
        if settings.donor_poll_seconds > 0:
            runtime.extras["donor_sync"] = asyncio.create_task(
                run_sync_loop(runtime=runtime, donors=adapters, settings=settings, clock=clock)
            )

    async def on_stop(runtime: ServiceRuntime) -> None:
        task = runtime.extras.pop("donor_sync", None)
        if isinstance(task, asyncio.Task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = create_service_app(
        settings=settings,
        migrations_dir=MIGRATIONS,
        routers=[router],
        description="Number port-in requests under the Italian migration rules, their timeline, attachments and consent documents, donor-operator adapters, the business calendar.",
        subscribe=tenant_numbers.subscribe,
        on_start=on_start,
        on_stop=on_stop,
        verifier=verifier,
    )

    @app.middleware("http")
    async def refuse_oversized_uploads(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Refused before the multipart parser spools it; the views check the file again.
        length = request.headers.get("content-length", "")
        limit = settings.attachment_max_bytes + UPLOAD_ENVELOPE_BYTES
        if request.method == "POST" and length.isdigit() and int(length) > limit:
            return Problem(
                413, "Attachment too large", f"at most {settings.attachment_max_bytes} bytes"
            ).response(request.url.path)
        return await call_next(request)

    return app
