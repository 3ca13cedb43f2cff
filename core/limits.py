"""Per-tenant limits: request rates and open streams, shared by every worker (docs/security.md, "Limits").

Rates use a sliding-window counter (this minute's count plus the share of last minute's that still overlaps the
window) in Django's cache: Redis when ``REDIS_URL`` is set, so every worker counts together; a local-memory cache in
``make run``'s single process. A refused attempt is not counted, so a client that waits ``Retry-After`` gets in.

Open streams are leases, not counters: each stream holds a slot that expires unless renewed, so a worker killed with
its streams open frees their slots within ``SLOT_LEASE_SECONDS`` instead of leaking them forever. With Redis a slot is
a member of a sorted set scored by expiry, taken atomically by a Lua script; without, a dict behind a lock.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache as memoize
from typing import Any, Protocol

import redis
from django.conf import settings
from django.core.cache import cache

from core.errors import ApiError, ErrorCode

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
SLOT_LEASE_SECONDS = 60.0
STREAM_RETRY_AFTER = 5


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``limit`` hits per ``WINDOW_SECONDS`` for one key of a scope; ``what`` names it in the error."""

    scope: str
    key: str
    limit: int
    what: str


def _cache_key(rate: Rate, window: int) -> str:
    return f"brook:rate:{rate.scope}:{rate.key}:{window}"


def _over(rate: Rate, now: float) -> int | None:
    """Count one hit; None if within the rate, else seconds until a retry would pass (the hit is not kept)."""
    window, into = divmod(now, WINDOW_SECONDS)
    current_key, previous_key = _cache_key(rate, int(window)), _cache_key(rate, int(window) - 1)
    cache.add(current_key, 0, timeout=2 * WINDOW_SECONDS + 5)
    current = cache.incr(current_key)
    previous = int(cache.get(previous_key) or 0)
    if current + previous * (WINDOW_SECONDS - into) / WINDOW_SECONDS <= rate.limit:
        return None
    cache.decr(current_key)
    return max(1, math.ceil(_wait(kept=current - 1, previous=previous, into=into, limit=rate.limit) + 1e-6))


def _wait(*, kept: int, previous: int, into: float, limit: int) -> float:
    """Seconds until one more hit fits, with ``kept`` hits this window and ``previous`` in the last, ``into`` seconds
    into this window. Within this window only last minute's share can shrink; after it, this window's hits become
    the share that slides out."""
    left = WINDOW_SECONDS - into
    if kept + 1 <= limit and previous:
        # previous * (left - t) / WINDOW <= limit - 1 - kept
        return max(0.0, left - (limit - 1 - kept) * WINDOW_SECONDS / previous)
    # Next window: 1 + kept * (WINDOW - t') / WINDOW <= limit
    return left + max(0.0, WINDOW_SECONDS * (1 - (limit - 1) / kept)) if kept else left


def rate_check(*rates: Rate) -> None:
    """Count a hit against each rate in order; the first one over its limit raises 429 ``RATE_LIMITED``.

    Rates before the refusing one keep their hit (the request did reach them); later ones are not touched. If the
    cache is down, limits fail open (logged): a Redis restart must not take the chat down with it.
    """
    now = time.time()
    for rate in rates:
        try:
            retry_after = _over(rate, now)
        except Exception:
            logger.warning("Rate limit %s not checked: the cache is unavailable", rate.scope, exc_info=True)
            return
        if retry_after is not None:
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"Too many {rate.what}: at most {rate.limit} a minute. Try again in {retry_after} s.",
                status_code=429,
                retry_after=retry_after,
                details={"limit": rate.limit, "scope": rate.scope},
            )


def client_ip(meta: Mapping[str, Any]) -> str:
    """The visitor's address: the socket's, or with ``BROOK_PROXY_HOPS`` proxies in front, the address the outermost
    trusted proxy saw (X-Forwarded-For entries to the left of that are the client's to forge)."""
    hops = int(settings.BROOK_PROXY_HOPS)
    if hops:
        forwarded = [part.strip() for part in str(meta.get("HTTP_X_FORWARDED_FOR", "")).split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return str(meta.get("REMOTE_ADDR") or "unknown")


# --- Open streams ---------------------------------------------------------------------------------------------------


class _Slots(Protocol):
    def take(self, key: str, member: str, limit: int, lease: float) -> bool: ...
    def renew(self, key: str, member: str, lease: float) -> None: ...
    def give_back(self, key: str, member: str) -> None: ...
    def count(self, key: str) -> int: ...


# KEYS[1] the pool; ARGV: member, limit, now, expiry. Drops lapsed leases, then adds the member if there is room.
_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"""


class _RedisSlots:
    """Slots as sorted-set members scored by lease expiry; one script call takes a slot atomically."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._take = self._client.register_script(_TAKE)

    def take(self, key: str, member: str, limit: int, lease: float) -> bool:
        now = time.time()
        return bool(self._take(keys=[key], args=[member, limit, now, now + lease]))

    def renew(self, key: str, member: str, lease: float) -> None:
        self._client.zadd(key, {member: time.time() + lease}, xx=True)

    def give_back(self, key: str, member: str) -> None:
        self._client.zrem(key, member)

    def count(self, key: str) -> int:
        count: Any = self._client.zcount(key, time.time(), "+inf")
        return int(count)


@dataclass
class _LocalSlots:
    """The same, in this process only (``make run`` without Redis)."""

    pools: dict[str, dict[str, float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: str, member: str, limit: int, lease: float) -> bool:
        now = time.time()
        with self.lock:
            pool = {m: expiry for m, expiry in self.pools.get(key, {}).items() if expiry > now}
            self.pools[key] = pool
            if len(pool) >= limit:
                return False
            pool[member] = now + lease
            return True

    def renew(self, key: str, member: str, lease: float) -> None:
        with self.lock:
            pool = self.pools.get(key, {})
            if member in pool:
                pool[member] = time.time() + lease

    def give_back(self, key: str, member: str) -> None:
        with self.lock:
            self.pools.get(key, {}).pop(member, None)

    def count(self, key: str) -> int:
        now = time.time()
        with self.lock:
            return sum(1 for expiry in self.pools.get(key, {}).values() if expiry > now)


@memoize
def _slots_for(url: str | None) -> _Slots:
    return _RedisSlots(url) if url else _LocalSlots()


def _slots() -> _Slots:
    return _slots_for(settings.REDIS_URL)


def session_pool(session_id: Any) -> str:
    return f"brook:streams:session:{session_id}"


def tenant_pool(tenant_id: int) -> str:
    return f"brook:streams:tenant:{tenant_id}"


def open_streams(pool: str) -> int:
    """How many unexpired stream slots a pool holds (for tests and the admin)."""
    return _slots().count(pool)


@dataclass
class StreamSlot:
    """Two leases, one in the session's pool and one in the tenant's, held while a stream is open."""

    pools: tuple[str, ...]
    member: str = field(default_factory=lambda: secrets.token_hex(8))

    def renew(self) -> None:
        for pool in self.pools:
            _slots().renew(pool, self.member, SLOT_LEASE_SECONDS)

    def release(self) -> None:
        for pool in self.pools:
            try:
                _slots().give_back(pool, self.member)
            except redis.RedisError:
                logger.warning("Could not give back a stream slot; its lease lapses on its own")


def stream_slot_take(*, tenant_id: int, session_id: Any, per_session: int, per_tenant: int) -> StreamSlot:
    """Take a slot for one more open stream, or raise 429 ``TOO_MANY_STREAMS`` (nothing held)."""
    slot = StreamSlot(pools=(session_pool(session_id), tenant_pool(tenant_id)))
    checks: list[tuple[str, int, str]] = [
        (slot.pools[0], per_session, f"This session already has {per_session} open streams"),
        (slot.pools[1], per_tenant, "This assistant has too many open streams right now"),
    ]
    taken: list[str] = []
    for pool, limit, message in checks:
        try:
            free = _slots().take(pool, slot.member, limit, SLOT_LEASE_SECONDS)
        except redis.RedisError:
            logger.warning("Stream limit not checked: Redis is unavailable", exc_info=True)
            return StreamSlot(pools=tuple(taken), member=slot.member)
        if not free:
            for held in taken:
                _slots().give_back(held, slot.member)
            raise ApiError(
                ErrorCode.TOO_MANY_STREAMS,
                f"{message}; close one or try again in {STREAM_RETRY_AFTER} s.",
                status_code=429,
                retry_after=STREAM_RETRY_AFTER,
                details={"limit": limit},
            )
        taken.append(pool)
    return slot
