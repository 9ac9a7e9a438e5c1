"""Helpers for tests against the real PostgreSQL and RabbitMQ (no mocks of either)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import aio_pika
import asyncpg
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from jose import jwk, jwt
from sqlalchemy import func, select

from .auth import JWKSVerifier, Role
from .db import outbox
from .events import Envelope, Event, TenantCreated, TenantKind, event_class
from .service import ServiceRuntime
from .settings import ServiceSettings
from .tenancy import upsert_tenant

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


async def fresh_database(name: str) -> str:
    """Drops and recreates a test database; returns its SQLAlchemy URL."""
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


async def drop_database(name: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def test_bus_names() -> dict[str, str]:
    """A private exchange and queue prefix, so tests never meet a running stack's events."""
    tag = uuid.uuid4().hex[:10]
    return {"bus_exchange": f"test.{tag}", "bus_queue_prefix": f"test.{tag}"}


async def delete_bus(exchange: str, queue_prefix: str, amqp_url: str = AMQP_URL) -> None:
    """Removes a test's exchange and every queue it declared (via the management-free API)."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        for name in await _queues_with_prefix(queue_prefix):
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
        with contextlib.suppress(Exception):
            await channel.exchange_delete(exchange)
    finally:
        await connection.close()


async def _queues_with_prefix(prefix: str) -> list[str]:
    proc = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "-q",
        "list_queues",
        "name",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    return [
        line.strip() for line in out.decode().splitlines() if line.strip().startswith(prefix + ".")
    ]


class TokenMint:
    """Signs test tokens the way the gateway does (ES256 with a kid) and serves the JWKS."""

    def __init__(self, *, audience: str = "centralino", issuer: str = "centralino-gateway") -> None:
        self.kid = uuid.uuid4().hex[:16]
        self.audience = audience
        self.issuer = issuer
        key = ec.generate_private_key(ec.SECP256R1())
        self._pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        public = jwk.construct(public_pem, "ES256").to_dict()
        self._jwk = {
            **{k: (v.decode() if isinstance(v, bytes) else v) for k, v in public.items()},
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self._jwk]}

    def verifier(self) -> JWKSVerifier:
        return JWKSVerifier(jwks=self.jwks(), audience=self.audience, issuer=self.issuer)

    def token(
        self,
        role: Role | str = Role.tenant_admin,
        *,
        tenant_id: uuid.UUID | None = None,
        reseller_id: uuid.UUID | None = None,
        sub: str = "test-user",
        ttl: int = 3600,
        **extra: Any,
    ) -> str:
        now = int(time.time())
        claims = {
            "sub": sub,
            "role": str(role),
            "tenant_id": str(tenant_id) if tenant_id else None,
            "reseller_id": str(reseller_id) if reseller_id else None,
            "iat": now,
            "exp": now + ttl,
            "aud": self.audience,
            "iss": self.issuer,
            "jti": uuid.uuid4().hex,
            **extra,
        }
        return jwt.encode(claims, self._pem, algorithm="ES256", headers={"kid": self.kid})

    def headers(self, role: Role | str = Role.tenant_admin, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, **kwargs)}"}


async def until(
    predicate: Callable[[], Any] | Callable[[], Awaitable[Any]],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "condition not met",
) -> Any:
    """Polls a (sync or async) predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} within {timeout}s")
        await asyncio.sleep(interval)


class BusProbe:
    """An exclusive queue on the exchange that records every envelope it sees."""

    def __init__(
        self, exchange: str, routing_keys: Iterable[str] = ("#",), amqp_url: str = AMQP_URL
    ):
        self.exchange_name = exchange
        self.routing_keys = list(routing_keys)
        self.amqp_url = amqp_url
        self.envelopes: list[Envelope[Any]] = []
        self.headers: list[dict[str, Any]] = []
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def __aenter__(self) -> BusProbe:
        self._connection = await aio_pika.connect(self.amqp_url)
        channel = await self._connection.channel()
        exchange = await channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in self.routing_keys:
            await queue.bind(exchange, routing_key=key)

        async def record(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                raw = json.loads(message.body)
                cls = event_class(raw["type"])
                self.envelopes.append(Envelope[cls].model_validate(raw))  # type: ignore[valid-type]
                self.headers.append(dict(message.headers or {}))

        await queue.consume(record)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._connection:
            await self._connection.close()

    def of_type(self, event_type: str) -> list[Envelope[Any]]:
        return [e for e in self.envelopes if e.type == event_type]

    async def wait_for(
        self, event_type: str, count: int = 1, timeout: float = 10.0
    ) -> list[Envelope[Any]]:
        """Waits until at least `count` envelopes of a type arrived; returns them."""
        await until(
            lambda: len(self.of_type(event_type)) >= count,
            timeout=timeout,
            message=f"{count} x {event_type} on the bus",
        )
        return self.of_type(event_type)


@contextlib.asynccontextmanager
async def serve_app(
    app: FastAPI, *, base_url: str = "http://test"
) -> AsyncIterator[httpx.AsyncClient]:
    """Runs an app's lifespan and yields an httpx client speaking to it in process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


@dataclass
class ServiceHarness:
    """A service app running in process on a fresh database and a private exchange."""

    app: FastAPI
    client: httpx.AsyncClient
    settings: ServiceSettings
    mint: TokenMint

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime

    async def wait_ready(self, timeout: float = 20.0) -> dict[str, Any]:
        async def ready() -> dict[str, Any] | None:
            response = await self.client.get("/readyz")
            return response.json() if response.status_code == 200 else None

        result: dict[str, Any] = await until(ready, timeout=timeout, message="/readyz")
        return result

    async def relayed(self, timeout: float = 20.0) -> None:
        """Waits until the outbox holds nothing unsent (the relay in-process or not)."""

        async def drained() -> bool:
            async with self.runtime.engine.connect() as conn:
                unsent = await conn.scalar(
                    select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
                )
            return unsent == 0

        await until(drained, timeout=timeout, message="outbox relayed")

    async def add_tenant(
        self,
        slug: str,
        *,
        reseller_id: uuid.UUID | None = None,
        tenant_id: uuid.UUID | None = None,
        kind: str = "company",
    ) -> TenantCreated:
        """Puts a tenant in the service's directory, as its tenant.created handler would."""
        event = TenantCreated(
            tenant_id=tenant_id or uuid.uuid4(),
            slug=slug,
            name=slug.replace("-", " ").title(),
            kind=TenantKind(kind),
            reseller_id=reseller_id,
            sip_realm=f"{slug}.centralino.test",
        )
        async with self.runtime.sessionmaker() as session, session.begin():
            await upsert_tenant(session, event)
        return event

    def probe(self, *routing_keys: str) -> BusProbe:
        """A probe on this harness's private exchange."""
        return BusProbe(self.settings.bus_exchange, routing_keys or ("#",))

    async def publish(self, event: Event, *, tenant_id: uuid.UUID | None) -> Envelope[Any]:
        """Publishes an event through the service's own outbox (as if another service had)."""
        async with self.runtime.sessionmaker() as session, session.begin():
            return await self.runtime.outbox.add(session, event, tenant_id=tenant_id)


@contextlib.asynccontextmanager
async def service_under_test(
    create_app: Callable[..., FastAPI],
    settings_cls: type[ServiceSettings],
    *,
    db_name: str,
    **overrides: Any,
) -> AsyncIterator[ServiceHarness]:
    """Starts a service app for a test: fresh database, private exchange, a token mint."""
    bus = test_bus_names()
    # Parallel pytest workers each get their own database.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    url = await fresh_database(f"{db_name}_{worker}" if worker else db_name)
    settings = settings_cls(environment="test", database_url=url, **{**bus, **overrides})
    mint = TokenMint()
    app = create_app(settings, verifier=mint.verifier())
    try:
        async with serve_app(app) as client:
            harness = ServiceHarness(app=app, client=client, settings=settings, mint=mint)
            await harness.runtime.consumer.wait_started()
            yield harness
    finally:
        await delete_bus(settings.bus_exchange, settings.bus_queue_prefix)


@contextlib.asynccontextmanager
async def serve_http(
    app: Any, *, lifespan: Literal["auto", "on", "off"] = "on", port: int = 0
) -> AsyncIterator[str]:
    """Runs an ASGI app with uvicorn on 127.0.0.1 and a free port (or `port`, to bring a
    server back where its clients expect it); yields its base URL."""
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await until(lambda: server.started or task.done(), timeout=60, message="uvicorn started")
        if task.done():
            task.result()
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)
        sock.close()


async def assert_no_server_errors(
    url: str,
    *,
    headers: dict[str, str],
    parameters: dict[str, str],
    config_dir: Any,
    max_examples: int = 6,
    extra_args: Iterable[str] = (),
) -> None:
    """Schemathesis over a running service's own OpenAPI: generated requests never get a 5xx."""
    import sys
    from pathlib import Path

    config = Path(config_dir) / "schemathesis.toml"
    config.write_text("[parameters]\n" + "".join(f'"{k}" = "{v}"\n' for k, v in parameters.items()))
    args = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        f"{url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        str(max_examples),
        "--seed",
        "20261125",
        "--no-shrink",
        # One worker: Hypothesis' lambda-source cache is not thread-safe on Python 3.11.
        "--workers",
        "1",
        "--request-timeout",
        "20",
        *extra_args,
    ]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 300)
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-6000:]
    assert " passed" in report and "failed" not in report.split("Test cases:")[-1], report[-3000:]
