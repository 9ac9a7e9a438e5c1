"""The routing app for the HTTP half of bench/route/run.py (a separate process).

Besides POST /v1/route it serves POST /bench/route-sql: the same token check and
request body, the decision answered from PostgreSQL (the baseline).

Usage: serve.py PORT DATABASE_URL JWKS_FILE EXCHANGE
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import asyncpg
import uvicorn
from fastapi import Depends
from fastapi.responses import JSONResponse

from centralino_proto.auth import Claims, JWKSVerifier
from centralino_routing.api import route_claims
from centralino_routing.config import Settings
from centralino_routing.decide import RouteRequest
from centralino_routing.main import create_app

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import SqlRouter


def main() -> None:
    port, database_url, jwks_file, exchange = sys.argv[1:5]
    settings = Settings(
        environment="test",
        database_url=database_url,
        bus_exchange=exchange,
        bus_queue_prefix=exchange,
        log_level="WARNING",
    )
    verifier = JWKSVerifier(jwks=json.loads(Path(jwks_file).read_text()))
    app = create_app(settings, verifier=verifier)
    pool: dict[str, Any] = {}

    async def route_sql(
        body: RouteRequest, _: Annotated[Claims, Depends(route_claims)]
    ) -> JSONResponse:
        if "pool" not in pool:
            pool["pool"] = await asyncpg.create_pool(
                database_url.replace("postgresql+asyncpg://", "postgresql://"),
                min_size=4,
                max_size=8,
            )
        async with pool["pool"].acquire() as conn:
            decision = await SqlRouter(conn).decide(body.model_dump(mode="json", exclude_none=True))
        return JSONResponse(json.loads(json.dumps(decision, default=str)))

    app.router.add_api_route("/bench/route-sql", route_sql, methods=["POST"])
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
