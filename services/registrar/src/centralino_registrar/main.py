"""The registrar service's app factory."""

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from centralino_proto.auth import JWKSVerifier
from centralino_proto.events import Envelope, ExtensionDeleted
from centralino_proto.service import ServiceRuntime, create_service_app

from . import devices
from .api import router
from .config import Settings
from .server import SipServer

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(
    settings: Settings | None = None, *, verifier: JWKSVerifier | None = None
) -> FastAPI:
    """Builds the registrar app; its SIP listener lives and dies with the app."""
    settings = settings or Settings()

    def sip(runtime: ServiceRuntime) -> SipServer:
        server = runtime.extras.get("sip")
        if server is None:
            server = runtime.extras["sip"] = SipServer(settings, runtime)
        assert isinstance(server, SipServer)
        return server

    async def on_extension_deleted(session: AsyncSession, envelope: Envelope[Any]) -> None:
        event: ExtensionDeleted = envelope.data
        server = sip(app.state.runtime)
        found = await devices.list_devices(
            session=session, tenant_id=event.tenant_id, extension=event.number
        )
        await devices.delete_devices(
            session=session, outbox=server.runtime.outbox, location=server.location, devices=found
        )
        for device in found:
            server.directory.forget_device(device.tenant_id, device.username)

    def subscribe(runtime: ServiceRuntime) -> None:
        runtime.consumer.subscribe(ExtensionDeleted, on_extension_deleted)

    async def on_start(runtime: ServiceRuntime) -> None:
        await sip(runtime).start()

    async def on_stop(runtime: ServiceRuntime) -> None:
        await sip(runtime).stop()

    app = create_service_app(
        settings=settings,
        migrations_dir=MIGRATIONS,
        routers=[router],
        description="SIP edge: devices (credentials as HA1 only), bindings (location), dialogs in progress; REGISTER and call control on SIP_PORT (UDP and TCP).",
        verifier=verifier,
        subscribe=subscribe,
        on_start=on_start,
        on_stop=on_stop,
    )
    sip(app.state.runtime)
    return app
