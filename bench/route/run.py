"""bench/route: POST /v1/route decisions per second and p50/p99 with 10,000 tenants x
50 extensions loaded, in process and over HTTP, against a baseline that answers
each decision with PostgreSQL queries. Prints both and the ratio.

    uv run python bench/route/run.py [--tenants 10000] [--extensions 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from centralino_proto.service import migrate
from centralino_proto.testing import (
    PG_ADMIN_URL,
    TokenMint,
    delete_bus,
    drop_database,
    fresh_database,
)
from centralino_routing.config import Settings
from centralino_routing.decide import Router, RouteRequest
from centralino_routing.main import MIGRATIONS
from centralino_routing.numbering import NumberingError, classify
from centralino_routing.plan import DialPlans, build_plans

HERE = Path(__file__).resolve().parent
DB = "bench_route"
AT = "2026-11-25T10:00:00+01:00"
DIDS_PER_TENANT = 4
PERMISSION_SETS = [  # national_fixed, mobile, international, premium, toll_free, shared_cost
    (True, False, False, False, False, False),
    (True, True, True, False, True, True),
    (True, True, False, False, True, True),
]


def did(tenant: int, n: int) -> str:
    return f"+39065{tenant:05d}{n}"


@dataclass
class Figures:
    what: str
    count: int
    seconds: float
    samples: list[float]

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1e6

    def line(self) -> str:
        return (
            f"{self.what:<34} {self.rate:>11,.0f} decisions/s   p50 {self.pct(0.5):>8.1f} us"
            f"   p99 {self.pct(0.99):>8.1f} us   ({self.count:,} decisions)"
        )


# -- load ------------------------------------------------------------------------


async def load(url: str, tenants: int, extensions: int) -> tuple[list[uuid.UUID], float]:
    """Bulk-loads the dial plans with COPY; returns the tenant ids and the seconds it took."""
    started = time.perf_counter()
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        ids = [uuid.uuid5(uuid.NAMESPACE_URL, f"bench-tenant-{i}") for i in range(tenants)]
        await conn.copy_records_to_table(
            "tenant_directory",
            columns=["tenant_id", "slug", "name", "kind", "sip_realm", "timezone", "active"],
            records=[
                (t, f"t{i}", f"Tenant {i}", "company", f"t{i}.bench.test", "Europe/Rome", True)
                for i, t in enumerate(ids)
            ],
        )
        allow = ["national_fixed", "mobile", "international", "premium", "toll_free", "shared_cost"]
        await conn.copy_records_to_table(
            "extension",
            columns=["id", "tenant_id", "number", "name", "kind", "enabled"]
            + [f"allow_{a}" for a in allow],
            records=(
                (
                    uuid.uuid4(),
                    t,
                    str(200 + e),
                    f"Ext {200 + e}",
                    "operator" if e == 0 else "station" if e % 3 == 0 else "user",
                    e % 17 != 16,
                    *PERMISSION_SETS[(i + e) % len(PERMISSION_SETS)],
                )
                for i, t in enumerate(ids)
                for e in range(extensions)
            ),
        )
        await conn.copy_records_to_table(
            "number",
            columns=["id", "tenant_id", "e164", "target", "source"],
            records=(
                (
                    uuid.uuid4(),
                    t,
                    did(i, n),
                    json.dumps({"kind": "extension", "extension": str(200 + n)}),
                    "assigned",
                )
                for i, t in enumerate(ids)
                for n in range(DIDS_PER_TENANT)
            ),
        )
        # Every 10 consecutive tenants form a link group, digits 0-9.
        groups = [uuid.uuid4() for _ in range((tenants + 9) // 10)]
        await conn.copy_records_to_table(
            "link_group",
            columns=["id", "name"],
            records=[(g, f"group {k}") for k, g in enumerate(groups)],
        )
        await conn.copy_records_to_table(
            "link_member",
            columns=["link_group_id", "tenant_id", "digit"],
            records=[(groups[i // 10], t, i % 10) for i, t in enumerate(ids)],
        )
        # A busy forward on the second extension of each tenant.
        await conn.execute(
            """
            INSERT INTO forwarding_rule (id, tenant_id, extension_id, condition, kind, target_extension)
            SELECT gen_random_uuid(), tenant_id, id, 'busy', 'extension', '200'
            FROM extension WHERE number = '201'
            """
        )
        await conn.execute(
            "INSERT INTO dialplan_version (tenant_id, version)"
            " SELECT tenant_id, nextval('dialplan_version_seq') FROM tenant_directory"
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return ids, time.perf_counter() - started


def workload(ids: list[uuid.UUID], extensions: int, n: int, seed: int = 7) -> list[dict[str, Any]]:
    """A mix of calls: internal, inter-company, national, mobile, abroad, on-net, inbound."""
    rng = random.Random(seed)
    calls: list[dict[str, Any]] = []
    for _ in range(n):
        i = rng.randrange(len(ids))
        caller = str(200 + rng.randrange(1, extensions))
        kind = rng.random()
        body: dict[str, Any] = {"tenant_id": str(ids[i]), "extension": caller, "at": AT}
        if kind < 0.25:
            body["digits"] = str(200 + rng.randrange(extensions))
        elif kind < 0.35:
            body["digits"] = f"{rng.randrange(10)}{200 + rng.randrange(extensions)}"
        elif kind < 0.55:
            body["digits"] = f"06{rng.randrange(10**7, 10**8)}"
        elif kind < 0.70:
            body["digits"] = f"3{rng.randrange(10**8, 10**9)}"
        elif kind < 0.80:
            body["digits"] = f"0044{rng.randrange(10**9, 10**10)}"
        elif kind < 0.90:
            body["digits"] = did(rng.randrange(len(ids)), rng.randrange(DIDS_PER_TENANT))
        else:
            body = {"inbound_did": did(i, rng.randrange(DIDS_PER_TENANT)), "at": AT}
        calls.append(body)
    return calls


# -- the compiled plan, in process -----------------------------------------------


async def compiled(url: str) -> tuple[Router, float]:
    engine = create_async_engine(url)
    started = time.perf_counter()
    async with engine.connect() as conn:
        from sqlalchemy.ext.asyncio import AsyncSession

        async with AsyncSession(bind=conn) as session, session.begin():
            plans = await build_plans(session)
    await engine.dispose()
    dial_plans = DialPlans()
    dial_plans.install(plans)
    return Router(dial_plans), time.perf_counter() - started


def in_process(router: Router, calls: list[dict[str, Any]]) -> Figures:
    requests = [RouteRequest.model_validate(c) for c in calls]
    samples = []
    started = time.perf_counter()
    for request in requests:
        t0 = time.perf_counter()
        router.decide(request)
        samples.append(time.perf_counter() - t0)
    return Figures(
        "in process (compiled plan)", len(requests), time.perf_counter() - started, samples
    )


# -- baseline: every decision from PostgreSQL -------------------------------------

SQL = {
    "tenant": "SELECT active FROM tenant_directory WHERE tenant_id = $1",
    "station": (
        "SELECT e.id, e.enabled, e.allow_national_fixed, e.allow_mobile, e.allow_international,"
        " e.allow_premium, e.allow_toll_free, e.allow_shared_cost FROM extension e"
        " WHERE e.tenant_id = $1 AND e.number = $2"
    ),
    "forwards": (
        "SELECT condition, kind, target_extension, target_e164, after_seconds"
        " FROM forwarding_rule WHERE extension_id = $1"
    ),
    "link": (
        "SELECT other.tenant_id FROM link_member me JOIN link_member other"
        " ON other.link_group_id = me.link_group_id AND other.digit = $2"
        " WHERE me.tenant_id = $1 AND other.tenant_id <> $1"
    ),
    "did": "SELECT tenant_id, target FROM number WHERE e164 = $1",
}


class _Query:
    def __init__(self, conn: Any, sql: str) -> None:
        self.conn, self.sql = conn, sql

    async def fetchrow(self, *args: Any) -> Any:
        return await self.conn.fetchrow(self.sql, *args)

    async def fetch(self, *args: Any) -> Any:
        return await self.conn.fetch(self.sql, *args)

    async def fetchval(self, *args: Any) -> Any:
        return await self.conn.fetchval(self.sql, *args)


class SqlRouter:
    """The same decision, each step a PostgreSQL query (what a naive routing service does)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        # asyncpg prepares each statement once per connection (its statement cache).
        self.q = {name: _Query(conn, sql) for name, sql in SQL.items()}

    async def _ring(self, tenant_id: uuid.UUID, number: str) -> dict[str, Any] | None:
        station = await self.q["station"].fetchrow(tenant_id, number)
        if station is None:
            return None
        forwards = await self.q["forwards"].fetch(station["id"])
        return {"targets": [(tenant_id, number)], "failure_rules": [dict(f) for f in forwards]}

    async def decide(self, call: dict[str, Any]) -> dict[str, Any]:
        if "inbound_did" in call:
            row = await self.q["did"].fetchrow(classify(call["inbound_did"]).e164)
            if row is None:
                return {"action": "reject"}
            target = json.loads(row["target"])
            return {
                "action": "extension",
                **(await self._ring(row["tenant_id"], target["extension"]) or {}),
            }
        tenant_id = uuid.UUID(call["tenant_id"])
        if not await self.q["tenant"].fetchval(tenant_id):
            return {"action": "reject"}
        caller = await self.q["station"].fetchrow(tenant_id, call["extension"])
        if caller is None:
            return {"action": "reject"}
        digits = call["digits"]
        ring = await self._ring(tenant_id, digits)
        if ring is not None:
            return {"action": "extension", **ring}
        if not caller["enabled"]:
            return {"action": "reject"}
        if len(digits) >= 3 and digits[0].isdigit():
            other = await self.q["link"].fetchval(tenant_id, int(digits[0]))
            if other is not None and (ring := await self._ring(other, digits[1:])) is not None:
                return {"action": "inter_company", **ring}
        try:
            number = classify(digits)
        except NumberingError:
            return {"action": "reject"}
        row = await self.q["did"].fetchrow(number.e164)
        if row is not None:
            target = json.loads(row["target"])
            return {
                "action": "on_net",
                **(await self._ring(row["tenant_id"], target["extension"]) or {}),
            }
        if not caller[f"allow_{number.call_class.value}"]:
            return {"action": "reject"}
        return {"action": "pstn", "e164": number.e164}


async def baseline(url: str, calls: list[dict[str, Any]]) -> Figures:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        router = SqlRouter(conn)
        for call in calls[:200]:  # warm the plan cache and the buffers
            await router.decide(call)
        samples = []
        started = time.perf_counter()
        for call in calls:
            t0 = time.perf_counter()
            await router.decide(call)
            samples.append(time.perf_counter() - t0)
        return Figures(
            "baseline (PostgreSQL per decision)", len(calls), time.perf_counter() - started, samples
        )
    finally:
        await conn.close()


# -- over HTTP --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(port: int, url: str, jwks_file: str, exchange: str) -> subprocess.Popen[bytes]:
    """The routing app in its own process, as in production."""
    return subprocess.Popen(
        [sys.executable, str(HERE / "serve.py"), str(port), url, jwks_file, exchange],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


async def over_http(
    url: str, calls: list[dict[str, Any]], concurrency: int
) -> tuple[Figures, Figures, float]:
    mint = TokenMint()
    exchange = f"bench.{uuid.uuid4().hex[:10]}"
    port = free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as jwks:
        json.dump(mint.jwks(), jwks)
    server = start_server(port, url, jwks.name, exchange)
    base = f"http://127.0.0.1:{port}"
    try:
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the routing app did not start")
                await asyncio.sleep(0.5)
        startup = time.perf_counter() - started
        print(
            f"(the HTTP service is ready: {rss_mib(server.pid):,.0f} MiB resident with every plan compiled)"
        )
        headers = mint.headers("service", sub="bench")

        async def drive(path: str, what: str) -> Figures:
            samples: list[float] = []
            queue = list(reversed(calls))

            async def worker(client: httpx.AsyncClient) -> None:
                while queue:
                    body = queue.pop()
                    t0 = time.perf_counter()
                    response = await client.post(path, json=body, headers=headers)
                    samples.append(time.perf_counter() - t0)
                    if response.status_code != 200:
                        raise RuntimeError(f"{response.status_code}: {response.text}")

            limits = httpx.Limits(
                max_connections=concurrency, max_keepalive_connections=concurrency
            )
            async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
                for body in calls[:50]:
                    await client.post(path, json=body, headers=headers)
                started = time.perf_counter()
                await asyncio.gather(*(worker(client) for _ in range(concurrency)))
                elapsed = time.perf_counter() - started
            return Figures(what, len(samples), elapsed, samples)

        compiled_http = await drive("/v1/route", f"over HTTP ({concurrency} conns)")
        # The same app, the same token check and body, the decision from PostgreSQL instead.
        baseline_http = await drive("/bench/route-sql", f"baseline over HTTP ({concurrency} conns)")
        return compiled_http, baseline_http, startup
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        os.unlink(jwks.name)
        await delete_bus(exchange, exchange)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--extensions", type=int, default=50)
    parser.add_argument("--decisions", type=int, default=100_000, help="in process")
    parser.add_argument("--baseline-decisions", type=int, default=5_000)
    parser.add_argument("--http-decisions", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()

    url = await fresh_database(DB)
    try:
        await migrate(Settings(environment="test", database_url=url), MIGRATIONS)
        ids, load_seconds = await load(url, args.tenants, args.extensions)
        print(
            f"loaded {args.tenants:,} tenants x {args.extensions} extensions"
            f" ({args.tenants * args.extensions:,} extensions, {args.tenants * DIDS_PER_TENANT:,} DIDs)"
            f" in {load_seconds:.1f}s"
        )
        router, compile_seconds = await compiled(url)
        print(f"compiled every dial plan in {compile_seconds:.1f}s")
        calls = workload(ids, args.extensions, args.decisions)
        local = in_process(router, calls)
        base = await baseline(url, calls[: args.baseline_decisions])
        http, http_base, startup = await over_http(
            url, calls[: args.http_decisions], args.concurrency
        )
        print(f"(the HTTP service started and compiled every plan in {startup:.1f}s)")
        print(local.line())
        print(base.line())
        print(http.line())
        print(http_base.line())
        print(
            f"ratio in process, compiled / baseline: {local.rate / base.rate:,.1f}x decisions/s,"
            f" p50 {base.pct(0.5) / local.pct(0.5):,.0f}x lower, p99 {base.pct(0.99) / local.pct(0.99):,.0f}x lower"
        )
        print(
            f"ratio over HTTP, compiled / baseline:  {http.rate / http_base.rate:,.1f}x decisions/s,"
            f" p50 {http_base.pct(0.5) / http.pct(0.5):,.1f}x lower"
            f" (mean {statistics.fmean(http.samples) * 1e6:,.0f} us per request incl. client)"
        )
    finally:
        await drop_database(DB)


if __name__ == "__main__":
    assert PG_ADMIN_URL
    asyncio.run(main())
