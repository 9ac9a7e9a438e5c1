"""The command line every service shares: serve, migrate, seed."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import uvicorn

from .service import ServiceRuntime, migrate
from .settings import ServiceSettings

Seed = Callable[[ServiceRuntime], Awaitable[None]]


def main(
    *,
    settings_factory: Callable[[], ServiceSettings],
    app_path: str,
    migrations_dir: Path,
    seed: Seed | None = None,
) -> None:
    """`python -m centralino_<service> serve|migrate|seed`."""
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP API (and the service's listeners)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int)
    sub.add_parser("migrate", help="create the database if missing and upgrade it to head")
    sub.add_parser("seed", help="load the demo data (idempotent)")
    args = parser.parse_args()
    settings = settings_factory()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )

    if args.command == "serve":
        uvicorn.run(
            app_path,
            factory=True,
            host=args.host,
            port=args.port or settings.http_port,
            log_level=settings.log_level.lower(),
            access_log=False,
        )
    elif args.command == "migrate":
        asyncio.run(migrate(settings, migrations_dir))
    elif args.command == "seed":
        if seed is None:
            print(f"{settings.service_name}: no demo data")
            return
        asyncio.run(_seed(settings, seed))


async def _seed(settings: ServiceSettings, seed: Seed) -> None:
    runtime = ServiceRuntime.create(settings)
    try:
        await seed(runtime)
    finally:
        await runtime.engine.dispose()
