"""The rating service's HTTP API."""

from fastapi import APIRouter

router = APIRouter(prefix="/v1")
