"""The per-call HTTP contracts bench/calls needs (docs/DEVELOPING.md), answered at once.

Stands in for routing, rating and the gateway's token endpoint until the bench runs the
real services: every dialled 2000 is the tenant's extension 2000, rated with no limit.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI

app = FastAPI()
TENANT = os.environ.get("BENCH_TENANT_ID", "")


@app.post("/v1/auth/token")
async def token() -> dict[str, Any]:
    return {"access_token": "bench", "token_type": "bearer", "expires_in": 3600}


@app.post("/v1/route")
async def route(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "action": "extension",
        "class": "national_fixed",
        "e164": None,
        "tenant_id": TENANT,
        "extension": body.get("extension"),
        "targets": [{"tenant_id": TENANT, "extension": body["digits"]}],
        "failure_rules": {},
    }


@app.post("/v1/authorize")
async def authorize(body: dict[str, Any]) -> dict[str, Any]:
    return {"allowed": True, "max_seconds": None, "reason": None}
