"""bench/register: REGISTER throughput at zero failures, Centralino registrar vs Kamailio 5.6.

sipp (UDP) registers 10,000 users with MD5 digest and qop=auth (REGISTER, 401, REGISTER,
200), stepping the call rate up until the first failed call or retransmission (the knee),
against the registrar and against Kamailio configured the same way (kamailio.cfg: usrloc
in memory, HA1s in memory, qop=auth with nonce counts, min_expires_mode=1, one UDP worker
each) in the same run. Each side must first refuse a wrong password. Also: the CPU each
side spends per registration at a fixed rate, all its processes counted (a steadier figure
than the knee); memory per binding at 100,000 bindings: Kamailio's shared memory after
sipp filled its usrloc, the registrar's location heap (tracemalloc) filled in process with
bindings like the ones sipp makes (filling it over SIP at its knee would take minutes).

    uv run python bench/register/run.py [--bindings 100000] [--users 10000]

Needs PostgreSQL and RabbitMQ as for the tests; uses free ports on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import httpx

HERE = Path(__file__).parent
REALM = "bench.centralino.test"
RATES = [200, 300, 400, 550, 750, 1000, 1300, 1700, 2200, 2800, 3600, 4600, 6000, 8000, 10000]
STEP_SECONDS = 5
# The fixed rate at which CPU per registration is measured (under both knees).
CPU_RATE = 1000
# register.xml: every registration a new binding (the benchmark, and the worst
# case for a registrar that stores each new binding with its event); --refresh uses
# refresh.xml: one binding per user, refreshed (the steady state of real phones).
SCENARIO = HERE / "register.xml"


def free_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def users(n: int) -> list[tuple[str, str]]:
    return [(str(100000 + i), f"pw{i:06d}x") for i in range(n)]


def write_csv(path: Path, accounts: list[tuple[str, str]]) -> None:
    rows = [f"{u};{REALM};[authentication username={u} password={p}]" for u, p in accounts]
    path.write_text("SEQUENTIAL\n" + "\n".join(rows) + "\n")


@dataclass
class Result:
    rate: int  # registrations/s at the knee
    per_binding: float  # bytes
    cpu_us: float  # CPU per registration at CPU_RATE


@dataclass
class Step:
    rate: int
    calls: int
    successful: int
    failed: int
    retransmissions: int
    seconds: float
    drops: int = 0

    @property
    def clean(self) -> bool:
        return self.failed == 0 and self.retransmissions == 0 and self.successful == self.calls


def sipp(
    port: int, csv: Path, rate: int, calls: int, work: Path, *, timeout: int | None = None
) -> Step:
    """One sipp run at a fixed call rate; its counters from the statistics file."""
    stat = work / f"stat-{port}-{rate}-{time.monotonic_ns()}.csv"
    drops = udp_receive_drops()
    started = time.monotonic()
    subprocess.run(
        [
            "sipp",
            f"127.0.0.1:{port}",
            "-sf",
            str(SCENARIO),
            "-inf",
            str(csv),
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port()),
            "-t",
            "u1",
            "-r",
            str(rate),
            "-m",
            str(calls),
            "-l",
            str(max(rate * 4, 200)),
            "-timeout",
            f"{timeout or calls // rate + 30}s",
            "-nostdin",
            # sipp's default 64 KB socket buffers drop responses that arrive in a burst
            # (a group commit answers many REGISTERs at once): the load generator must
            # not be what fails first.
            "-buff_size",
            str(4 * 1024 * 1024),
            "-trace_stat",
            "-stf",
            str(stat),
            "-fd",
            "1",
        ],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=calls // rate + 90,
        check=False,
    )
    elapsed = time.monotonic() - started
    lines = [line for line in stat.read_text().splitlines() if line.strip()]
    header = lines[0].rstrip(";").split(";")
    last = dict(zip(header, lines[-1].rstrip(";").split(";"), strict=False))
    return Step(
        rate=rate,
        calls=calls,
        successful=int(last.get("SuccessfulCall(C)", 0)),
        failed=int(last.get("FailedCall(C)", 0)),
        retransmissions=int(last.get("Retransmissions(C)", 0)),
        seconds=elapsed,
        drops=udp_receive_drops() - drops,
    )


def udp_receive_drops() -> int:
    """Datagrams the kernel dropped for a full socket receive buffer (any socket)."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    header, values = [row for row in lines if row[0] == "Udp:"][:2]
    return int(values[header.index("RcvbufErrors")])


def knee(name: str, port: int, csv: Path, n_users: int, work: Path) -> tuple[int, int]:
    """Steps the rate up to the first failure or retransmission, then halves the gap to the
    last clean rate twice; returns the highest clean rate and the registrations made."""
    best = 0
    made = 0

    def step(rate: int) -> bool:
        nonlocal made
        # Each call adds a binding; past 10,000 calls the users come round again.
        calls = max(min(rate * STEP_SECONDS, n_users), rate * 2)
        result = sipp(port, csv, rate, calls, work)
        made += result.successful
        print(
            f"  {name:<10} {rate:>5} reg/s: {result.successful:>6} ok, {result.failed:>4} failed, "
            f"{result.retransmissions:>5} retransmissions, {result.drops:>4} dropped in a full "
            f"receive buffer ({result.seconds:.1f}s)",
            flush=True,
        )
        # An overloaded step leaves retransmissions in flight: let them drain.
        time.sleep(1 if result.clean else 5)
        return result.clean

    failed_at = 0
    for rate in RATES:
        if not step(rate):
            failed_at = rate
            break
        best = rate
    for _ in range(2):
        if not failed_at or failed_at - best < 100:
            break
        middle = (best + failed_at) // 2 // 50 * 50
        if step(middle):
            best = middle
        else:
            failed_at = middle
    return best, made


def refuses_wrong_password(
    name: str, port: int, accounts: list[tuple[str, str]], work: Path
) -> None:
    """Both sides must challenge a wrong password again (sipp fails the call), or the
    comparison would be with something that does not authenticate."""
    wrong = work / f"wrong-{name}.csv"
    write_csv(wrong, [(user, password + "-wrong") for user, password in accounts[:5]])
    result = sipp(port, wrong, 5, 5, work, timeout=3)
    if result.successful:
        raise SystemExit(f"{name} registered {result.successful} users with a wrong password")
    print(f"  {name:<10} wrong password: 0 of 5 registered", flush=True)


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and every process under it (the registrar's relay,
    Kamailio's children), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
            times[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / ticks
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo.extend(children.get(current, []))
    return total


def first_round(name: str, port: int, csv: Path, n_users: int, work: Path) -> None:
    """--refresh: every user registers once, so the ramp measures refreshes."""
    result = sipp(port, csv, CPU_RATE, n_users, work)
    print(f"  {name:<10} first round: {result.successful} users registered", flush=True)
    if result.successful != n_users:
        raise SystemExit(f"{name}: only {result.successful} of {n_users} users registered")


def cpu_per_registration(name: str, pid: int, port: int, csv: Path, work: Path) -> float:
    """Microseconds of CPU per registration (both REGISTERs) at CPU_RATE, all processes."""
    calls = CPU_RATE * 10
    before = cpu_seconds(pid)
    result = sipp(port, csv, CPU_RATE, calls, work)
    used = cpu_seconds(pid) - before
    per = used / max(result.successful, 1) * 1e6
    print(
        f"  {name:<10} CPU at {CPU_RATE} reg/s: {used:.2f} s for {result.successful} "
        f"registrations, {per:.0f} us each (every process of it)",
        flush=True,
    )
    return per


def fill(
    name: str, port: int, csv: Path, rate: int, target: int, have: int, n: int, work: Path
) -> int:
    """Registers more contacts until `target` bindings exist (at a rate under the knee)."""
    while have < target:
        calls = min(n, target - have)
        step = sipp(port, csv, rate, calls, work)
        have += step.successful
        print(f"  {name:<10} filled to {have} bindings", flush=True)
        if step.successful == 0:
            break
    return have


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(m.group(1)) if m else 0


# -- Centralino registrar ------------------------------------------------------


async def prepare_registrar(database_url: str, accounts: list[tuple[str, str]]) -> uuid.UUID:
    """A fresh database, migrated, with one tenant and a device per account (HA1 only)."""
    from sqlalchemy import insert

    from centralino_proto.events import TenantCreated, TenantKind
    from centralino_proto.service import ServiceRuntime, migrate
    from centralino_proto.tenancy import upsert_tenant
    from centralino_proto.testing import fresh_database
    from centralino_registrar.config import Settings
    from centralino_registrar.main import MIGRATIONS
    from centralino_registrar.models import Device
    from centralino_registrar.sip.digest import ha1

    name = database_url.rsplit("/", 1)[1]
    await fresh_database(name)
    settings = Settings(database_url=database_url)
    await migrate(settings, MIGRATIONS)
    runtime = ServiceRuntime.create(settings)
    tenant_id = uuid.uuid4()
    now = datetime.now(UTC)
    try:
        async with runtime.sessionmaker() as session, session.begin():
            await upsert_tenant(
                session,
                TenantCreated(
                    tenant_id=tenant_id,
                    slug="bench",
                    name="Bench",
                    kind=TenantKind("company"),
                    reseller_id=None,
                    sip_realm=REALM,
                ),
            )
            rows = [
                {
                    "id": uuid.uuid4(),
                    "tenant_id": tenant_id,
                    "extension": user,
                    "username": user,
                    "display_name": None,
                    "realm": REALM,
                    "ha1_md5": ha1("MD5", user, REALM, password),
                    "ha1_sha256": ha1("SHA-256", user, REALM, password),
                    "created_at": now,
                    "updated_at": now,
                }
                for user, password in accounts
            ]
            for i in range(0, len(rows), 2000):
                await session.execute(insert(Device), rows[i : i + 2000])
    finally:
        await runtime.engine.dispose()
    return tenant_id


def location_memory(n: int) -> float:
    """Heap bytes per binding in the registrar's location, filled as REGISTERs fill it."""
    import tracemalloc

    from centralino_proto.bus import Outbox
    from centralino_proto.db import make_engine, make_sessionmaker
    from centralino_registrar.location import Binding, Location

    engine = make_engine("postgresql+asyncpg://postgres@127.0.0.1:5432/unused")
    location = Location(sessionmaker=make_sessionmaker(engine), outbox=Outbox(producer="bench"))
    tenant_id = uuid.uuid4()
    now = time.time()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        user = str(100000 + i % 10000)
        location._put(
            Binding(
                binding_id=uuid.uuid4(),
                tenant_id=tenant_id,
                device_id=uuid.uuid4(),
                username=user,
                extension=user,
                aor=f"sip:{user}@{REALM}",
                contact=f"sip:{user}@127.0.0.1:{20000 + i % 40000};line={i}",
                expires_at=now + 3600,
                registered_at=now,
                call_id=f"{i}-4711@127.0.0.1",
                cseq=2,
                source_ip="127.0.0.1",
                source_port=20000 + i % 40000,
                transport="udp",
                user_agent="sipp-bench",
            )
        )
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / n


def bindings_of_registrar(http: int) -> int:
    text = httpx.get(f"http://127.0.0.1:{http}/metrics", timeout=10).text
    m = re.search(r"^centralino_sip_bindings (\S+)$", text, re.M)
    return int(float(m.group(1))) if m else 0


# -- Kamailio ------------------------------------------------------------------


def prepare_kamailio(db: Path, accounts: list[tuple[str, str]]) -> None:
    """HA1 (and HA1b) only, no clear passwords: the db_text subscriber table (auth_db,
    bench/calls) and the table htable loads into memory (bench/register)."""
    db.mkdir(parents=True, exist_ok=True)
    (db / "version").write_text("table_name(str) table_version(int)\nsubscriber:7\ncredentials:2\n")
    subscribers = ["id(int,auto) username(str) domain(str) password(str,null) ha1(str) ha1b(str)"]
    credentials = [
        "id(int,auto) key_name(str) key_type(int) value_type(int) key_value(str) expires(int)"
    ]
    for i, (user, password) in enumerate(accounts, 1):
        h1 = hashlib.md5(f"{user}:{REALM}:{password}".encode()).hexdigest()  # noqa: S324
        h1b = hashlib.md5(f"{user}@{REALM}:{REALM}:{password}".encode()).hexdigest()  # noqa: S324
        subscribers.append(f"{i}:{user}:{REALM}::{h1}:{h1b}")
        credentials.append(f"{i}:{user}:0:0:{h1}:0")
    (db / "subscriber").write_text("\n".join(subscribers) + "\n")
    (db / "credentials").write_text("\n".join(credentials) + "\n")


def kamcmd(sock: Path, *args: str) -> str:
    return subprocess.run(
        ["kamcmd", "-s", f"unix:{sock}", *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    ).stdout


def kamailio_shm_used(sock: Path) -> int:
    m = re.search(r"real_used:\s+(\d+)", kamcmd(sock, "core.shmmem"))
    return int(m.group(1)) if m else 0


def kamailio_bindings(sock: Path) -> int:
    m = re.search(r"location_contacts\s*=\s*(\d+)", kamcmd(sock, "stats.get_statistics", "all"))
    return int(m.group(1)) if m else 0


def wait_udp(port: int, timeout: float = 60) -> None:
    """Waits until something answers an OPTIONS on the port."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.5)
        local = s.getsockname()[1]
        while time.monotonic() < deadline:
            probe = (
                f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{uuid.uuid4().hex}\r\n"
                "From: <sip:bench@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\n"
                f"Call-ID: {uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            s.sendto(probe.encode(), ("127.0.0.1", port))
            with contextlib.suppress(TimeoutError):
                if s.recv(4096).startswith(b"SIP/2.0 200"):
                    return
            time.sleep(0.2)
    raise RuntimeError(f"nothing answers SIP on {port}")


def start_registrar(
    database_url: str,
    sip_port: int,
    http_port: int,
    tag: str,
    extra_env: dict[str, str],
    output: IO[str] | int = subprocess.DEVNULL,
) -> subprocess.Popen[bytes]:
    """The registrar service in its own process on a private exchange; returns once it
    answers SIP."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SIP_HOST": "127.0.0.1",
        "SIP_PORT": str(sip_port),
        "SIP_NONCE_SECRET": "bench-nonce-secret",
        "BUS_EXCHANGE": f"bench.{tag}",
        "BUS_QUEUE_PREFIX": f"bench.{tag}",
        "LOG_LEVEL": "WARNING",
        **extra_env,
    }
    registrar = subprocess.Popen(
        [
            sys.executable,
            *("-m", "centralino_registrar", "serve"),
            *("--host", "127.0.0.1", "--port", str(http_port)),
        ],
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    _ready(registrar, sip_port)
    return registrar


def start_kamailio(
    cfg: Path, accounts: list[tuple[str, str]], work: Path, *, shm_mb: int
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """Kamailio with `cfg` on a free UDP port and `accounts` as db_text subscribers (HA1
    only); returns the process, its SIP port and its control socket once it answers SIP."""
    db = work / "kamailio-db"
    prepare_kamailio(db, accounts)
    port = free_port()
    sock = work / "kamailio-ctl.sock"
    kamailio = subprocess.Popen(
        [
            *("kamailio", "-f", str(cfg), "-DD", "-E", "-l", f"udp:127.0.0.1:{port}"),
            *("-A", f'DBURL="text://{db}"', "-A", f'CTLSOCK="unix:{sock}"'),
            *("-m", str(shm_mb), "-M", "32"),
            *("-w", str(work), "-P", str(work / "kamailio.pid")),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _ready(kamailio, port)
    return kamailio, port, sock


def _ready(proc: subprocess.Popen[bytes], sip_port: int) -> None:
    try:
        wait_udp(sip_port)
    except BaseException:
        stop(proc)
        raise


def stop(*processes: subprocess.Popen[bytes] | None) -> None:
    """SIGINT (a clean shutdown for the registrar and uvicorn, SIGTERM-like for the rest),
    then SIGKILL after 20 s."""
    for proc in processes:
        if proc is None:
            continue
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(20)
        proc.kill()


def bench_registrar(
    args: argparse.Namespace, accounts: list[tuple[str, str]], csv: Path, work: Path
) -> Result:
    """The Centralino registrar: one process, one event loop."""
    from centralino_proto.testing import delete_bus, drop_database

    tag = uuid.uuid4().hex[:8]
    database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/bench_registrar_{tag}"
    asyncio.run(prepare_registrar(database_url, accounts))
    sip_port, http_port = free_port(), free_port()
    log = (work / "registrar.log").open("w")
    registrar = start_registrar(
        database_url,
        sip_port,
        http_port,
        tag,
        {"SIP_MAX_BINDINGS_PER_AOR": "1000"},
        log,
    )
    try:
        refuses_wrong_password("centralino", sip_port, accounts, work)
        if args.refresh:
            first_round("centralino", sip_port, csv, args.users, work)
        rate, _ = knee("centralino", sip_port, csv, args.users, work)
        cpu = cpu_per_registration("centralino", registrar.pid, sip_port, csv, work)
        print(
            f"  centralino bindings after the ramp: {bindings_of_registrar(http_port)} "
            f"(process RSS {rss_kib(registrar.pid) // 1024} MiB)",
            flush=True,
        )
        if args.refresh:
            return Result(rate, 0.0, cpu)
        per_binding = location_memory(args.bindings)
        print(
            f"  centralino location memory: {per_binding:.0f} bytes per binding "
            f"({args.bindings} bindings, Python heap)",
            flush=True,
        )
        return Result(rate, per_binding, cpu)
    finally:
        stop(registrar)
        log.close()

        async def cleanup() -> None:
            await drop_database(database_url.rsplit("/", 1)[1])
            await delete_bus(f"bench.{tag}", f"bench.{tag}")

        asyncio.run(cleanup())


def bench_kamailio(
    args: argparse.Namespace, accounts: list[tuple[str, str]], csv: Path, work: Path
) -> Result:
    """Kamailio 5.6 configured the same way (kamailio.cfg)."""
    kamailio, kport, sock = start_kamailio(HERE / "kamailio.cfg", accounts, work, shm_mb=1024)
    try:
        base_shm = kamailio_shm_used(sock)
        refuses_wrong_password("kamailio", kport, accounts, work)
        if args.refresh:
            first_round("kamailio", kport, csv, args.users, work)
        rate, _ = knee("kamailio", kport, csv, args.users, work)
        cpu = cpu_per_registration("kamailio", kamailio.pid, kport, csv, work)
        if args.refresh:
            print(f"  kamailio   bindings after the ramp: {kamailio_bindings(sock)}", flush=True)
            return Result(rate, 0.0, cpu)
        fill(
            "kamailio",
            kport,
            csv,
            max(rate * 7 // 10, 100),
            args.bindings,
            kamailio_bindings(sock),
            args.users,
            work,
        )
        have = kamailio_bindings(sock)
        per_binding = (kamailio_shm_used(sock) - base_shm) / max(have, 1)
        print(
            f"  kamailio   bindings {have}, shared memory {per_binding:.0f} bytes per binding",
            flush=True,
        )
        return Result(rate, per_binding, cpu)
    finally:
        stop(kamailio)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--bindings", type=int, default=100_000)
    parser.add_argument("--only", choices=["centralino", "kamailio"])
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument(
        "--refresh", action="store_true", help="refreshes of one binding per user (refresh.xml)"
    )
    args = parser.parse_args()
    global SCENARIO
    if args.refresh:
        SCENARIO = HERE / "refresh.xml"
    for tool in ("sipp", "kamailio", "kamcmd"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (see .ci/apt-packages.txt)")
    accounts = users(args.users)
    work = Path(tempfile.mkdtemp(prefix="bench-register-"))
    csv = work / "users.csv"
    write_csv(csv, accounts)
    print(
        f"bench/register: {args.users} users, MD5 digest qop=auth, UDP, sipp stepping the rate, "
        + ("refreshing one binding each" if args.refresh else "a new binding every registration"),
        flush=True,
    )
    results: dict[str, Result] = {}
    try:
        if args.only != "kamailio":
            results["centralino"] = bench_registrar(args, accounts, csv, work)
        if args.only != "centralino":
            results["kamailio"] = bench_kamailio(args, accounts, csv, work)
    finally:
        if args.keep:
            print(f"work directory: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if len(results) < 2:
        return
    ours, theirs = results["centralino"], results["kamailio"]
    top = "" if theirs.rate < RATES[-1] else " (the top step: Kamailio's knee is at or above it)"
    print()
    print(f"registrations/s at zero failures: centralino {ours.rate}, kamailio {theirs.rate}{top}")
    print(
        f"REGISTER requests/s (two per registration): centralino {2 * ours.rate}, "
        f"kamailio {2 * theirs.rate}"
    )
    print(f"ratio centralino/kamailio: {ours.rate / max(theirs.rate, 1):.2f}")
    print(
        f"CPU per registration at {CPU_RATE} reg/s: centralino {ours.cpu_us:.0f} us, "
        f"kamailio {theirs.cpu_us:.0f} us (ratio {theirs.cpu_us / max(ours.cpu_us, 1):.2f})"
    )
    if args.refresh:
        return
    print(
        f"memory per binding at {args.bindings} bindings: centralino {ours.per_binding:.0f} B "
        f"(location heap), kamailio {theirs.per_binding:.0f} B (usrloc shared memory)"
    )


if __name__ == "__main__":
    main()
