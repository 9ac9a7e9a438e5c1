"""bench/calls: calls per second through the proxy, Centralino registrar vs Kamailio 5.6.

A sipp UAC (digest-authenticated INVITE, 180, 200, ACK, BYE) calls a sipp UAS registered
behind the proxy, stepping the call rate up to the first failed call or retransmission.
The registrar asks routing and rating per call (POST /v1/route, POST /v1/authorize) and
publishes call.started / call.answered / call.ended through its outbox to RabbitMQ;
Kamailio is a plain record-routing stateful proxy (kamailio.cfg) with the same digest
challenge and one worker. Prints both rates, the ratio, and how many calls that started
have no call.ended on the bus (must be 0).

    uv run python bench/calls/run.py

Routing, rating and the gateway's token endpoint are answered by contract.py (their HTTP
contracts, answered at once), not by the real services: the figure is the registrar's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "register"))
from run import REALM, free_port, start_kamailio, start_registrar, stop  # noqa: E402

RATES = [10, 20, 40, 60, 90, 130, 180, 250, 350, 500, 700, 1000, 1400, 2000]
STEP_SECONDS = 5
CALLER, CALLEE = ("1000", "pw-caller-1000"), ("2000", "pw-callee-2000")


def sipp(args: list[str], work: Path, timeout: float) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["sipp", *args, "-i", "127.0.0.1", "-nostdin"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


def register_callee(port: int, uas_port: int, work: Path) -> None:
    csv = work / "callee.csv"
    user, password = CALLEE
    csv.write_text(
        f"SEQUENTIAL\n{user};{REALM};[authentication username={user} password={password}]\n"
    )
    result = sipp(
        [
            f"127.0.0.1:{port}",
            "-sf",
            str(HERE.parent / "register" / "register.xml"),
            "-inf",
            str(csv),
            "-p",
            str(uas_port),
            "-m",
            "1",
            "-timeout",
            "20s",
            "-timeout_error",
        ],
        work,
        60,
    )
    if result.returncode != 0:
        raise RuntimeError(f"the callee could not register on {port}")


def start_uas(uas_port: int, work: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["sipp", "-sf", str(HERE / "uas.xml"), "-i", "127.0.0.1", "-p", str(uas_port), "-nostdin"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def step(port: int, rate: int, work: Path) -> tuple[int, int, int]:
    """One sipp UAC run at a fixed rate: (successful, failed, retransmissions)."""
    calls = rate * STEP_SECONDS
    csv = work / "caller.csv"
    user, password = CALLER
    csv.write_text(
        f"SEQUENTIAL\n2000;{REALM};[authentication username={user} password={password}];{user}\n"
    )
    stat = work / f"stat-{port}-{rate}-{time.monotonic_ns()}.csv"
    sipp(
        [
            f"127.0.0.1:{port}",
            "-sf",
            str(HERE / "uac.xml"),
            "-inf",
            str(csv),
            "-p",
            str(free_port()),
            "-r",
            str(rate),
            "-m",
            str(calls),
            "-timeout",
            f"{STEP_SECONDS + 40}s",
            "-trace_stat",
            "-stf",
            str(stat),
            "-fd",
            "1",
        ],
        work,
        STEP_SECONDS + 90,
    )
    lines = [line for line in stat.read_text().splitlines() if line.strip()]
    header = lines[0].rstrip(";").split(";")
    last = dict(zip(header, lines[-1].rstrip(";").split(";"), strict=False))
    return (
        int(last.get("SuccessfulCall(C)", 0)),
        int(last.get("FailedCall(C)", 0)),
        int(last.get("Retransmissions(C)", 0)),
    )


def ramp(name: str, port: int, work: Path) -> int:
    best = 0
    for rate in RATES:
        ok, failed, retrans = step(port, rate, work)
        print(
            f"  {name:<10} {rate:>4} calls/s: {ok:>5} ok, {failed:>4} failed, {retrans:>5} retransmissions",
            flush=True,
        )
        if failed or retrans or ok != rate * STEP_SECONDS:
            break
        best = rate
        time.sleep(1)
    return best


async def bus_counter(exchange: str) -> tuple[object, object]:
    import aio_pika

    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    channel = await connection.channel()
    ex = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(f"{exchange}.count", auto_delete=False)
    await queue.bind(ex, routing_key="call.started")
    await queue.bind(ex, routing_key="call.ended")
    return connection, queue


async def drain(queue: object) -> tuple[set[str], dict[str, set[str]]]:
    """Call ids that started, and per call id the distinct call.ended events (envelope ids).

    The relay publishes at least once (a republished envelope keeps its id, and consumers
    drop it by id), so only distinct envelope ids for one call would be a double end.
    """
    started: set[str] = set()
    ended: dict[str, set[str]] = {}
    while True:
        message = await queue.get(no_ack=True, fail=False)  # type: ignore[attr-defined]
        if message is None:
            return started, ended
        envelope = json.loads(message.body)
        call_id = envelope["data"]["call_id"]
        if envelope["type"] == "call.started":
            started.add(call_id)
        else:
            ended.setdefault(call_id, set()).add(envelope["id"])


def bench_registrar(work: Path) -> tuple[int, int]:
    from run import prepare_registrar

    from centralino_proto.testing import delete_bus, drop_database

    tag = uuid.uuid4().hex[:8]
    database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/bench_calls_{tag}"
    tenant_id = asyncio.run(prepare_registrar(database_url, [CALLER, CALLEE]))
    contract_port, sip_port, http_port, uas_port = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    )
    contract = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "contract:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(contract_port),
            "--log-level",
            "warning",
        ],
        cwd=HERE,
        env={**os.environ, "BENCH_TENANT_ID": str(tenant_id)},
    )
    exchange = f"bench.{tag}"
    url = f"http://127.0.0.1:{contract_port}"
    loop = asyncio.new_event_loop()
    connection, queue = loop.run_until_complete(bus_counter(exchange))
    registrar = uas = None
    try:
        registrar = start_registrar(
            database_url,
            sip_port,
            http_port,
            tag,
            {"ROUTING_URL": url, "RATING_URL": url, "GATEWAY_URL": url},
        )
        for _ in range(100):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.post(f"{url}/v1/auth/token", timeout=2).status_code == 200:
                    break
            time.sleep(0.2)
        register_callee(sip_port, uas_port, work)
        uas = start_uas(uas_port, work)
        rate = ramp("centralino", sip_port, work)
        time.sleep(5)  # the relay publishes what is left in the outbox
        started, ended = loop.run_until_complete(drain(queue))
        lost = len(started - set(ended))
        doubled = sum(1 for ids in ended.values() if len(ids) > 1)
        print(
            f"  centralino calls started {len(started)}, ended {len(ended)}, "
            f"lost {lost}, ended twice {doubled}",
            flush=True,
        )
        return rate, lost + doubled
    finally:
        stop(uas, registrar, contract)

        async def cleanup() -> None:
            with contextlib.suppress(Exception):
                await queue.delete(if_unused=False, if_empty=False)  # type: ignore[attr-defined]
            await connection.close()  # type: ignore[attr-defined]
            await drop_database(database_url.rsplit("/", 1)[1])
            await delete_bus(exchange, exchange)

        loop.run_until_complete(cleanup())
        loop.close()


def bench_kamailio(work: Path) -> int:
    kamailio, port, _ = start_kamailio(HERE / "kamailio.cfg", [CALLER, CALLEE], work, shm_mb=256)
    uas_port = free_port()
    uas = None
    try:
        register_callee(port, uas_port, work)
        uas = start_uas(uas_port, work)
        return ramp("kamailio", port, work)
    finally:
        stop(uas, kamailio)


def main() -> None:
    for tool in ("sipp", "kamailio"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (see .ci/apt-packages.txt)")
    work = Path(tempfile.mkdtemp(prefix="bench-calls-"))
    print(
        "bench/calls: digest INVITE, 180, 200, ACK, BYE; sipp UAC -> proxy -> sipp UAS", flush=True
    )
    try:
        ours, lost = bench_registrar(work)
        theirs = bench_kamailio(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"calls/s at zero failures: centralino {ours}, kamailio {theirs}")
    print(f"ratio centralino/kamailio: {ours / max(theirs, 1):.2f}")
    print(f"call.ended lost: {lost}")


if __name__ == "__main__":
    main()
