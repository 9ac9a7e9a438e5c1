"""Requests per second and p99 of a read through the gateway (JWT verified, tenant
scoped, proxied with httpx) against the same read straight from its owner (routing's
extension list). Both run as real `serve` processes on free ports; prints both and
the overhead ratio.

uv run python bench/gateway/run.py [--requests 1200] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import httpx

from centralino_proto.testing import delete_bus, drop_database, fresh_database, test_bus_names

ROOT = Path(__file__).resolve().parents[2]
PATH = "/v1/tenants/bellavista/extensions"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def python_m(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


async def run(cmd: list[str], env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, cwd=ROOT)
    if await proc.wait() != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")


async def wait_ready(url: str, proc: asyncio.subprocess.Process, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"{url} exited with {proc.returncode}")
            try:
                if (await client.get(f"{url}/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} not ready in {timeout}s")


async def load(
    url: str, headers: dict[str, str], requests: int, concurrency: int
) -> tuple[float, float]:
    """(requests per second, p99 in ms) of `requests` GETs with `concurrency` in flight."""
    latencies: list[float] = []
    remaining = requests
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=30
    ) as client:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                started = time.perf_counter()
                response = await client.get(PATH)
                latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    raise RuntimeError(f"{url}{PATH}: {response.status_code} {response.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return len(latencies) / elapsed, p99 * 1000


async def main(requests: int, concurrency: int) -> None:
    bus = test_bus_names()
    gateway_db = await fresh_database("bench_gateway")
    routing_db = await fresh_database("bench_routing")
    gw_port, rt_port = free_port(), free_port()
    gateway_url, routing_url = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{rt_port}"
    common = {
        **os.environ,
        "ENVIRONMENT": "development",
        "BUS_EXCHANGE": bus["bus_exchange"],
        "LOG_LEVEL": "WARNING",
        "JWKS_URL": f"{gateway_url}/.well-known/jwks.json",
        "GATEWAY_URL": gateway_url,
    }
    envs = {
        "gateway": {
            **common,
            "DATABASE_URL": gateway_db,
            "ROUTING_URL": routing_url,
            "BUS_QUEUE_PREFIX": bus["bus_queue_prefix"] + ".gw",
        },
        "routing": {
            **common,
            "DATABASE_URL": routing_db,
            "BUS_QUEUE_PREFIX": bus["bus_queue_prefix"] + ".rt",
        },
    }
    procs: list[asyncio.subprocess.Process] = []
    try:
        for service, port in (("gateway", gw_port), ("routing", rt_port)):
            module = f"centralino_{service}"
            await run(python_m(module, "migrate"), envs[service])
            serve = python_m(module, "serve", "--host", "127.0.0.1", "--port", str(port))
            procs.append(await asyncio.create_subprocess_exec(*serve, env=envs[service], cwd=ROOT))
        await wait_ready(gateway_url, procs[0])
        await wait_ready(routing_url, procs[1])
        for service in ("gateway", "routing"):
            await run(python_m(f"centralino_{service}", "seed"), envs[service])

        async with httpx.AsyncClient(base_url=gateway_url, timeout=30) as client:
            r = await client.post(
                "/v1/auth/token",
                json={"username": "reseller@centralino.test", "password": "reseller"},
            )
            r.raise_for_status()
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}

        # Warm both paths (connections, JWKS cache, plan caches), then alternate rounds.
        await load(routing_url, headers, 200, concurrency)
        await load(gateway_url, headers, 200, concurrency)
        direct, proxied = [], []
        for _ in range(2):
            direct.append(await load(routing_url, headers, requests // 2, concurrency))
            proxied.append(await load(gateway_url, headers, requests // 2, concurrency))
        d_rps = statistics.mean(r for r, _ in direct)
        d_p99 = max(p for _, p in direct)
        p_rps = statistics.mean(r for r, _ in proxied)
        p_p99 = max(p for _, p in proxied)
        print(f"GET {PATH}, {requests} requests per path, {concurrency} in flight")
        print(f"  straight from routing : {d_rps:8.0f} req/s   p99 {d_p99:7.1f} ms")
        print(f"  through the gateway   : {p_rps:8.0f} req/s   p99 {p_p99:7.1f} ms")
        print(
            f"  overhead ratio        : {d_rps / p_rps:8.2f}x throughput, {p_p99 / d_p99:.2f}x p99"
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
        await delete_bus(bus["bus_exchange"], bus["bus_queue_prefix"])
        await drop_database("bench_gateway")
        await drop_database("bench_routing")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1200)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.concurrency))
