"""Brook's Redis channel layer against a redis-server of the test's own, restarted under it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio

from deploy.stack import Stack, StackConfig
from streaming.live.layers import ResilientRedisChannelLayer
from tests.conftest import free_port

pytestmark = pytest.mark.stack  # a redis-server of its own


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[Stack]:
    stack = Stack(StackConfig(state_dir=tmp_path, database_url="", redis_port=free_port()))
    await asyncio.to_thread(stack.start_redis)
    yield stack
    await asyncio.to_thread(stack.stop)


async def blocked_in_redis(stack: Stack, waiting: asyncio.Task[dict[str, str]]) -> None:
    """Return once ``waiting`` (a receive) waits inside Redis, so that a restart cuts it off (5 s at most)."""
    client = redis.asyncio.Redis.from_url(stack.redis_url)
    try:
        for _ in range(250):
            assert not waiting.done()
            if (await client.info("clients"))["blocked_clients"] >= 1:
                return
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
    raise AssertionError("the receive never reached Redis")


async def send_until_received(
    layer: ResilientRedisChannelLayer, group: str, waiting: asyncio.Task[dict[str, str]]
) -> dict[str, str]:
    for _ in range(100):
        with contextlib.suppress(Exception):  # Redis may still be coming back
            await layer.group_send(group, {"type": "ping"})
        done, _ = await asyncio.wait({waiting}, timeout=0.1)
        if done:
            return waiting.result()
    raise AssertionError("nothing arrived within 10 s")


async def test_a_subscription_survives_a_redis_restart(private_redis: Stack) -> None:
    layer = ResilientRedisChannelLayer(hosts=[private_redis.redis_url])
    channel = await layer.new_channel()
    await layer.group_add("followers", channel)
    waiting = asyncio.create_task(layer.receive(channel))
    await blocked_in_redis(private_redis, waiting)

    await asyncio.to_thread(private_redis.restart_redis)
    received = await send_until_received(layer, "followers", waiting)

    assert received == {"type": "ping"}
    assert layer.degraded is False
    await layer.flush()
    await layer.close_pools()


async def test_a_discarded_subscription_is_not_restored(private_redis: Stack) -> None:
    layer = ResilientRedisChannelLayer(hosts=[private_redis.redis_url])
    kept, dropped = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("followers", kept)
    await layer.group_add("followers", dropped)
    await layer.group_discard("followers", dropped)
    waiting = asyncio.create_task(layer.receive(kept))
    await blocked_in_redis(private_redis, waiting)

    await asyncio.to_thread(private_redis.restart_redis)
    await send_until_received(layer, "followers", waiting)  # the memberships are back
    await layer.send(dropped, {"type": "direct"})

    # A channel's messages arrive in the order they were sent: had "dropped" been put back in the group, the ping that
    # reached "kept" would come before this message.
    assert await asyncio.wait_for(layer.receive(dropped), timeout=10) == {"type": "direct"}
    await layer.close_pools()
