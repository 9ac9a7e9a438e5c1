"""`Idempotency-Key` on POST: the first answer is kept and replayed to a retry of the same request."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from centralino_proto.service import ServiceRuntime
from centralino_proto.web import Problem

from .models import IdempotencyRecord, utcnow

KEEP = timedelta(hours=24)
# Answers not worth replaying: the caller should be able to retry these for real.
NOT_KEPT = {401, 408, 409, 425, 429}
REPLAY_HEADERS = ("content-type", "location")


async def purge_idempotency(*, session: AsyncSession) -> None:
    """Forgets keys older than a day."""
    await session.execute(
        delete(IdempotencyRecord).where(col(IdempotencyRecord.created_at) < utcnow() - KEEP)
    )


class IdempotencyMiddleware:
    """Keys are per caller (hash of its credential), so two callers never share one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].startswith("/v1/")
        ):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = headers.get("idempotency-key")
        credential = headers.get("authorization") or headers.get("x-api-key")
        if key is None or credential is None:
            await self.app(scope, receive, send)
            return
        if not 1 <= len(key) <= 255:
            await Problem(422, "Invalid Idempotency-Key", "1 to 255 characters").response(
                scope["path"]
            )(scope, receive, send)
            return

        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        principal = hashlib.sha256(credential.encode()).hexdigest()
        request_hash = hashlib.sha256(
            b"\0".join([scope["path"].encode(), scope.get("query_string", b""), body])
        ).hexdigest()
        runtime: ServiceRuntime = scope["app"].state.runtime

        async with runtime.sessionmaker() as session, session.begin():
            claimed = await session.execute(
                pg_insert(IdempotencyRecord)
                .values(
                    principal=principal,
                    key=key,
                    method="POST",
                    path=scope["path"][:2000],
                    request_hash=request_hash,
                    headers={},
                    created_at=utcnow(),
                )
                .on_conflict_do_nothing()
                .returning(col(IdempotencyRecord.key))
            )
            first = claimed.first() is not None
            record = None
            if not first:
                record = (
                    await session.scalars(
                        select(IdempotencyRecord).where(
                            col(IdempotencyRecord.principal) == principal,
                            col(IdempotencyRecord.key) == key,
                        )
                    )
                ).first()
        if record is not None:
            await self._replay(record, request_hash, scope, receive, send)
            return

        sent = False

        async def replay_receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status = 500
        response_headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, response_headers
            if message["type"] == "http.response.start":
                status = message["status"]
                response_headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_receive, capture)
        finally:
            async with runtime.sessionmaker() as session, session.begin():
                where = (
                    col(IdempotencyRecord.principal) == principal,
                    col(IdempotencyRecord.key) == key,
                )
                if status >= 500 or status in NOT_KEPT:
                    await session.execute(delete(IdempotencyRecord).where(*where))
                else:
                    kept = {
                        k.decode("latin-1").lower(): v.decode("latin-1")
                        for k, v in response_headers
                        if k.decode("latin-1").lower() in REPLAY_HEADERS
                    }
                    await session.execute(
                        update(IdempotencyRecord)
                        .where(*where)
                        .values(status_code=status, headers=kept, body=b"".join(chunks))
                    )

    @staticmethod
    async def _replay(
        record: IdempotencyRecord, request_hash: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if record.request_hash != request_hash:
            problem = Problem(
                422,
                "Idempotency-Key reused",
                "this key was used with a different request",
            )
        elif record.status_code is None:
            problem = Problem(
                409,
                "Request in progress",
                "the first request with this Idempotency-Key has not finished",
                headers={"Retry-After": "1"},
            )
        else:
            headers: dict[str, Any] = dict(record.headers)
            headers["idempotent-replayed"] = "true"
            await send(
                {
                    "type": "http.response.start",
                    "status": record.status_code,
                    "headers": [(k.encode(), str(v).encode()) for k, v in headers.items()],
                }
            )
            await send({"type": "http.response.body", "body": record.body or b""})
            return
        await problem.response(scope["path"])(scope, receive, send)
