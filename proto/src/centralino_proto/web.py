"""HTTP plumbing shared by the services: problem+json errors, health, metrics, auth deps."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import Claims, InvalidToken, JWKSVerifier

log = logging.getLogger("centralino.web")

PROBLEM_JSON = "application/problem+json"

HTTP_SECONDS = Histogram(
    "centralino_http_request_seconds",
    "HTTP request time",
    ["service", "method", "route", "status"],
)


class Problem(Exception):
    """An RFC 9457 problem: raise it anywhere in a request to answer with problem+json."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.headers = headers
        self.extensions = extensions

    def response(self, instance: str | None = None) -> JSONResponse:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status}
        if self.detail:
            body["detail"] = self.detail
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return JSONResponse(
            body, status_code=self.status, media_type=PROBLEM_JSON, headers=self.headers
        )


def install_problem_handlers(app: FastAPI) -> None:
    """Every error the app answers is problem+json."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return exc.response(request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        title = exc.detail if isinstance(exc.detail, str) else "HTTP error"
        return Problem(exc.status_code, title, headers=getattr(exc, "headers", None)).response(
            request.url.path
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return Problem(
            422, "Invalid request", "the request does not match the schema", errors=errors
        ).response(request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return Problem(500, "Internal error").response(request.url.path)


class RequestTimer:
    """Times each request by route template; plain ASGI, so it adds no task per request."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_timed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_timed)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            HTTP_SECONDS.labels(self.service, scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )


def install_metrics(app: FastAPI, service: str) -> None:
    """Times every request and serves Prometheus text at /metrics."""
    app.add_middleware(RequestTimer, service=service)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


ReadinessCheck = Callable[[], Awaitable[str | None]]


def health_router(checks: dict[str, ReadinessCheck]) -> APIRouter:
    """/healthz (the process is alive) and /readyz (every dependency answers)."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", responses={503: {"description": "not ready"}})
    async def readyz() -> Response:
        failures: dict[str, str] = {}
        for name, check in checks.items():
            try:
                problem = await check()
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                failures[name] = problem
        if failures:
            return Problem(503, "Not ready", ", ".join(failures), checks=failures).response()
        return JSONResponse({"status": "ready", "checks": dict.fromkeys(checks, "ok")})

    return router


async def database_check(session: AsyncSession) -> str | None:
    await session.execute(text("SELECT 1"))
    return None


# -- dependencies ------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session from the service's pool; the view commits what it changes."""
    async with request.app.state.runtime.sessionmaker() as session:
        yield session


async def get_claims(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Claims:
    """The verified claims of the bearer token; 401 without a valid one."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(
            401,
            "Unauthorized",
            "a bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    verifier: JWKSVerifier = request.app.state.runtime.verifier
    try:
        return await verifier.verify(credentials.credentials)
    except InvalidToken as exc:
        raise Problem(
            401, "Unauthorized", str(exc), headers={"WWW-Authenticate": "Bearer"}
        ) from exc


SessionDep = Annotated[AsyncSession, Depends(get_session)]
ClaimsDep = Annotated[Claims, Depends(get_claims)]
