"""Runs the platform on one machine: migrate, start, wait for ready, seed, stop.

`make run` / `make up` / `make down` / `make seed` call this. Logs and pids go
under .run/ (git-ignored). `devctl.py restart <service>` stops one service of a
running `make up` and starts it again (the end-to-end tests restart the registrar
mid-call with it).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = ROOT / ".run"

# Service -> HTTP port (ARCHITECTURE.md). The gateway goes first: it publishes
# tenant.created, and the others verify tokens with its JWKS.
SERVICES = {
    "gateway": 8000,
    "registrar": 8001,
    "routing": 8002,
    "rating": 8003,
    "portability": 8004,
    "vpn-ca": 8005,
}


def package(service: str) -> str:
    return "centralino_" + service.replace("-", "_")


def python_m(service: str, *args: str) -> list[str]:
    return [sys.executable, "-m", package(service), *args]


def migrate() -> None:
    """Creates each database if missing and migrates it, all in parallel."""
    procs = {s: subprocess.Popen(python_m(s, "migrate"), cwd=ROOT) for s in SERVICES}
    failed = [s for s, p in procs.items() if p.wait() != 0]
    if failed:
        sys.exit(f"migration failed for: {', '.join(failed)}")


def seed() -> None:
    """Loads every service's demo data (each seed is idempotent)."""
    for service in SERVICES:
        if subprocess.call(python_m(service, "seed"), cwd=ROOT) != 0:
            sys.exit(f"seeding {service} failed")


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_ready(procs: dict[str, subprocess.Popen[bytes]], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    waiting = {s: SERVICES[s] for s in procs}
    while waiting:
        for service, port in list(waiting.items()):
            if procs[service].poll() is not None:
                sys.exit(
                    f"{service} exited with {procs[service].returncode}; see {log_path(service)}"
                )
            if ready(port):
                print(f"  {service} ready on :{port}")
                del waiting[service]
        if time.monotonic() > deadline:
            sys.exit(f"not ready after {timeout:.0f}s: {', '.join(waiting)}")
        time.sleep(0.3)


def log_path(service: str) -> Path:
    return RUN_DIR / f"{service}.log"


def pid_path(service: str) -> Path:
    return RUN_DIR / f"{service}.pid"


def start(
    *, background: bool, services: list[str] | None = None
) -> dict[str, subprocess.Popen[bytes]]:
    RUN_DIR.mkdir(exist_ok=True)
    env = {**os.environ, "MIGRATE_ON_START": "false"}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    for service in services or list(SERVICES):
        out = log_path(service).open("ab") if background else None
        procs[service] = subprocess.Popen(
            python_m(service, "serve"),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if background else None,
            start_new_session=background,
        )
        pid_path(service).write_text(str(procs[service].pid))
    return procs


def _signal(pid: int, sig: int) -> None:
    """Signals a service's process group (make up) or the process itself (make run)."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def stop_pid(service: str) -> None:
    """SIGTERM to a service started by `make up` (SIGKILL after 10 s); no-op when not running."""
    path = pid_path(service)
    if not path.exists():
        return
    pid = int(path.read_text())
    try:
        _signal(pid, signal.SIGTERM)
    except ProcessLookupError:
        path.unlink()
        return
    for _ in range(100):
        try:
            _signal(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        _signal(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    print(f"  {service} stopped")


def stop_pids() -> None:
    for service in SERVICES:
        stop_pid(service)


def restart(service: str) -> None:
    """Stops one service of `make up` and starts it again in the background, until ready."""
    if not pid_path(service).exists():
        sys.exit(f"{service} was not started by `make up`")
    stop_pid(service)
    wait_ready(start(background=True, services=[service]))


def running() -> list[str]:
    return [s for s in SERVICES if ready(SERVICES[s])]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["run", "up", "down", "seed", "migrate", "restart"])
    parser.add_argument("service", nargs="?", choices=list(SERVICES), help="for restart")
    args = parser.parse_args()
    command = args.command

    if command == "down":
        stop_pids()
        return
    if command == "restart":
        if args.service is None:
            parser.error("restart needs a service")
        restart(args.service)
        return
    if command in ("run", "up") and running():
        sys.exit(f"already running: {', '.join(running())} (make down first)")
    migrate()
    if command == "migrate":
        return
    if command == "seed":
        seed()
        return

    procs = start(background=command == "up")
    try:
        wait_ready(procs)
        seed()
    except SystemExit:
        if command == "up":
            stop_pids()
        raise
    if command == "up":
        print(f"Centralino is up (logs in {RUN_DIR}); `make down` stops it.")
        return

    print("Centralino is running; Ctrl-C stops it.")
    # Ctrl-C or a supervisor's SIGTERM both stop everything, whatever signal state we inherited.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        while all(p.poll() is None for p in procs.values()):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for service in SERVICES:
            pid_path(service).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
