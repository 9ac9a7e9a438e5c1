"""Failed-authentication bans per source address (the job of Kamailio's pike plus fail2ban)."""

from __future__ import annotations

import collections
import logging
import time

from prometheus_client import Counter, Gauge

log = logging.getLogger("centralino.registrar.abuse")

AUTH_FAILURES = Counter(
    "centralino_sip_auth_failures_total", "Failed SIP digest authentications", ["kind"]
)
BANS = Counter("centralino_sip_bans_total", "Source addresses banned for failed authentications")
BANNED_DROPS = Counter(
    "centralino_sip_banned_requests_total", "Requests dropped from banned sources"
)
BANNED_NOW = Gauge("centralino_sip_banned_sources", "Source addresses banned right now")


class AbuseGuard:
    """Counts failures per source and per user in a sliding window; bans past a threshold.

    A user under attack from many addresses (each below the per-source threshold) gets
    every further failing source banned at once.
    """

    def __init__(self, *, threshold: int = 10, window: float = 60.0, ban: float = 300.0) -> None:
        self.threshold = threshold
        self.window = window
        self.ban_seconds = ban
        self._by_source: dict[str, collections.deque[float]] = {}
        self._by_user: dict[str, collections.deque[float]] = {}
        self._banned: dict[str, float] = {}

    def banned(self, ip: str) -> bool:
        until = self._banned.get(ip)
        if until is None:
            return False
        if until <= time.monotonic():
            del self._banned[ip]
            BANNED_NOW.set(len(self._banned))
            return False
        BANNED_DROPS.inc()
        return True

    def _count(self, table: dict[str, collections.deque[float]], key: str, now: float) -> int:
        hits = table.setdefault(key, collections.deque())
        hits.append(now)
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(table) > 100_000:  # bounded memory under a spray of addresses
            table.clear()
        return len(hits)

    def failed(self, ip: str, user: str | None, kind: str) -> None:
        """Records a failed authentication from a source for a user."""
        AUTH_FAILURES.labels(kind).inc()
        now = time.monotonic()
        source_count = self._count(self._by_source, ip, now)
        user_count = self._count(self._by_user, user, now) if user else 0
        if source_count >= self.threshold or user_count >= self.threshold:
            if ip not in self._banned:
                BANS.inc()
                log.warning(
                    "sip: banning %s for %.0fs (%d failures from it, %d for user %s in %.0fs)",
                    ip,
                    self.ban_seconds,
                    source_count,
                    user_count,
                    user,
                    self.window,
                )
            self._banned[ip] = now + self.ban_seconds
            self._by_source.pop(ip, None)
            BANNED_NOW.set(len(self._banned))
