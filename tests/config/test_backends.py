"""The cache and channel layer Brook is configured with really work: Redis when REDIS_URL is set (CI's second run)."""

from __future__ import annotations

import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache


def test_the_cache_is_redis_exactly_when_redis_url_is_set() -> None:
    backend = settings.CACHES["default"]["BACKEND"]
    expected = "redis.RedisCache" if settings.REDIS_URL else "locmem.LocMemCache"

    assert backend.endswith(expected)
    key = f"test-{uuid.uuid4()}"
    cache.set(key, {"n": 1}, timeout=30)
    assert cache.get(key) == {"n": 1}
    cache.delete(key)


def test_the_channel_layer_delivers_a_group_message() -> None:
    layer = get_channel_layer()
    assert layer is not None
    expected = "ResilientRedisChannelLayer" if settings.REDIS_URL else "InMemoryChannelLayer"
    assert type(layer).__name__ == expected

    async def round_trip() -> dict[str, object]:
        channel = await layer.new_channel()
        group = f"test.{uuid.uuid4().hex}"
        await layer.group_add(group, channel)
        await layer.group_send(group, {"type": "ping", "n": 7})
        received: dict[str, object] = await layer.receive(channel)
        await layer.group_discard(group, channel)
        return received

    assert async_to_sync(round_trip)() == {"type": "ping", "n": 7}
