"""Facade routes: the public /v1 paths other services own, proxied with the caller's token."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Path, Request, Response

from centralino_proto.auth import Role
from centralino_proto.web import Problem, SessionDep

from .deps import PrincipalDep, require_scope, runtime_of, scopes_of, settings_of

log = logging.getLogger("centralino.gateway.proxy")

READ = ("GET",)
COLLECTION = ("GET", "POST")
ITEM = ("GET", "PUT", "PATCH", "DELETE")
ALL = ("GET", "POST", "PUT", "PATCH", "DELETE")
TENANT = "/v1/tenants/{tenant}"

# Request headers carried to the owner besides Authorization.
FORWARD_REQUEST = (
    "content-type",
    "accept",
    "idempotency-key",
    "if-match",
    "if-none-match",
    "accept-language",
)
# Response headers carried back to the caller.
FORWARD_RESPONSE = (
    "content-type",
    "content-disposition",
    "location",
    "retry-after",
    "etag",
    "last-modified",
    "cache-control",
    "link",
    "x-total-count",
    "www-authenticate",
)


@dataclass(frozen=True)
class Facade:
    """A public path and the service that owns it."""

    path: str
    owner: str
    methods: tuple[str, ...]
    # Global routes only: the roles the gateway lets through (the owner checks again).
    roles: tuple[Role, ...] | None = None
    # The provisioning URL a phone fetches carries its own one-time token.
    public: bool = False

    @property
    def tenant_scoped(self) -> bool:
        return self.path.startswith(TENANT)

    @property
    def resource(self) -> str:
        rest = self.path.removeprefix(TENANT).removeprefix("/v1").strip("/")
        return rest.split("/")[0] or "tenant"


def _tenant(owner: str, sub: str, methods: tuple[str, ...]) -> Facade:
    return Facade(TENANT + sub, owner, methods)


# Order matters: the more specific path first (.../extensions/{ext}/devices is the registrar's).
FACADES: tuple[Facade, ...] = (
    # registrar
    _tenant("registrar", "/extensions/{ext}/devices", COLLECTION),
    _tenant("registrar", "/extensions/{ext}/devices/{rest:path}", ALL),
    _tenant("registrar", "/devices", COLLECTION),
    _tenant("registrar", "/devices/{rest:path}", ALL),
    _tenant("registrar", "/line-status", READ),
    _tenant("registrar", "/line-status/{rest:path}", ("GET", "DELETE")),
    _tenant("registrar", "/calls", READ),
    _tenant("registrar", "/calls/{rest:path}", ("GET", "DELETE")),
    # routing
    _tenant("routing", "/extensions", COLLECTION),
    _tenant("routing", "/extensions/{ext}", ITEM),
    _tenant("routing", "/extensions/{ext}/permissions", ("GET", "PUT", "PATCH")),
    _tenant("routing", "/extensions/{ext}/forwarding", ITEM),
    _tenant("routing", "/numbers", COLLECTION),
    _tenant("routing", "/numbers/{rest:path}", ALL),
    _tenant("routing", "/schedules", COLLECTION),
    _tenant("routing", "/schedules/{rest:path}", ALL),
    _tenant("routing", "/ivr-menus", COLLECTION),
    _tenant("routing", "/ivr-menus/{rest:path}", ALL),
    Facade("/v1/link-groups", "routing", COLLECTION, roles=(Role.operator, Role.reseller)),
    Facade("/v1/link-groups/{rest:path}", "routing", ALL, roles=(Role.operator, Role.reseller)),
    Facade("/v1/route", "routing", ("POST",), roles=(Role.service, Role.operator)),
    # rating
    _tenant("rating", "/balance", ("GET", "PATCH")),
    _tenant("rating", "/ledger", READ),
    _tenant("rating", "/top-ups", COLLECTION),
    _tenant("rating", "/top-ups/{rest:path}", READ),
    _tenant("rating", "/cdrs", READ),
    _tenant("rating", "/cdrs/{rest:path}", READ),
    _tenant("rating", "/subscription", ("GET", "PUT", "PATCH", "DELETE")),
    _tenant("rating", "/stations", READ),
    _tenant("rating", "/stations/{rest:path}", ("GET", "POST", "PUT", "PATCH")),
    _tenant("rating", "/quote", COLLECTION),
    Facade("/v1/rate-decks", "rating", COLLECTION, roles=(Role.operator, Role.reseller)),
    Facade("/v1/rate-decks/{rest:path}", "rating", ALL, roles=(Role.operator, Role.reseller)),
    Facade("/v1/plans", "rating", COLLECTION),
    Facade("/v1/plans/{rest:path}", "rating", ALL),
    Facade("/v1/authorize", "rating", ("POST",), roles=(Role.service, Role.operator)),
    # portability
    _tenant("portability", "/port-requests", COLLECTION),
    _tenant("portability", "/port-requests/{rest:path}", ALL),
    Facade("/v1/migration-codes/validate", "portability", ("GET", "POST")),
    Facade("/v1/calendar/business-days", "portability", READ),
    Facade("/v1/calendar/holidays", "portability", READ),
    # Every port request the caller may see, across tenants (the owner filters).
    Facade("/v1/port-requests", "portability", READ, roles=(Role.operator, Role.reseller)),
    # vpn-ca
    _tenant("vpn-ca", "/ca", ("GET", "POST", "PATCH")),
    _tenant("vpn-ca", "/ca/{rest:path}", ALL),
    _tenant("vpn-ca", "/certificates", COLLECTION),
    _tenant("vpn-ca", "/certificates/{rest:path}", ALL),
    _tenant("vpn-ca", "/provisioning-tokens", COLLECTION),
    _tenant("vpn-ca", "/provisioning-tokens/{rest:path}", ALL),
    Facade("/v1/provisioning/{rest:path}", "vpn-ca", READ, public=True),
)


async def forward(
    request: Request, *, owner: str, authorization: str | None, body: bytes | None = None
) -> Response:
    """Sends the request on to its owner and hands the answer back as it is."""
    runtime = runtime_of(request)
    client: httpx.AsyncClient = runtime.extras["http"]
    base = settings_of(request).upstreams()[owner]
    headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARD_REQUEST}
    if authorization:
        headers["authorization"] = authorization
    if request.client:
        headers["x-forwarded-for"] = request.client.host
    if any(segment in (".", "..") for segment in request.url.path.split("/")):
        raise Problem(400, "Invalid path", "dot segments are not allowed in a path")
    # The path exactly as the caller encoded it (%2F stays one segment).
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    url = base + raw_path.decode("latin-1")
    try:
        upstream = await client.request(
            request.method,
            url,
            params=str(request.query_params),
            content=body if body is not None else await request.body(),
            headers=headers,
        )
    except httpx.TimeoutException as exc:
        raise Problem(
            504, "Upstream timeout", f"the {owner} service did not answer in time"
        ) from exc
    except httpx.HTTPError as exc:
        log.warning("proxy to %s failed: %s", owner, exc)
        raise Problem(503, "Upstream unavailable", f"the {owner} service is not reachable") from exc
    out = {k: v for k, v in upstream.headers.items() if k.lower() in FORWARD_RESPONSE}
    return Response(content=upstream.content, status_code=upstream.status_code, headers=out)


def _endpoint(facade: Facade) -> Callable[..., Awaitable[Response]]:
    async def endpoint(
        request: Request, principal: PrincipalDep, session: SessionDep, **_: str
    ) -> Response:
        action = "read" if request.method in ("GET", "HEAD") else "write"
        if facade.tenant_scoped:
            ref = request.path_params["tenant"]
            scope = await scopes_of(request).get(ref)
            if scope is None or not principal.claims.may_access(
                tenant_id=scope.id, tenant_reseller_id=scope.reseller_id
            ):
                raise Problem(404, "Tenant not found", f"no tenant {ref} visible to this token")
        elif facade.roles is not None and principal.claims.role not in facade.roles:
            raise Problem(403, "Forbidden", f"{facade.path} is not open to {principal.claims.role}")
        require_scope(principal, facade.resource, action)
        # Hand the pooled connection back before waiting on the owner.
        await session.close()
        return await forward(request, owner=facade.owner, authorization=principal.authorization)

    async def public_endpoint(request: Request, **_: str) -> Response:
        return await forward(request, owner=facade.owner, authorization=None)

    names = [p.split(":")[0] for p in _path_params(facade.path)]
    path_params = [
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[str, Path()])
        for n in names
    ]
    func: Any = public_endpoint if facade.public else endpoint
    base = [
        p
        for p in inspect.signature(func).parameters.values()
        if p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    func.__signature__ = inspect.Signature([*base, *path_params])
    return func


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


_JSON_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


def facade_router() -> APIRouter:
    """One documented operation per facade path and method."""
    router = APIRouter()
    for facade in FACADES:
        endpoint = _endpoint(facade)
        for method in facade.methods:
            slug = facade.path.replace("{rest:path}", "item").strip("/").replace("/", "_")
            slug = slug.replace("{", "").replace("}", "").replace("-", "_")
            router.add_api_route(
                facade.path,
                endpoint,
                methods=[method],
                name=f"{method.lower()}_{slug}",
                operation_id=f"{method.lower()}_{slug}",
                summary=f"{method} (proxied to {facade.owner})",
                tags=[f"facade: {facade.owner}"],
                openapi_extra=_JSON_BODY if method in ("POST", "PUT", "PATCH") else None,
                response_class=Response,
                responses={200: {"description": f"the {facade.owner} service's answer"}},
            )
    return router
