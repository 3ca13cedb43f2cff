"""Brook's Redis channel layer: channels-redis that rides out a Redis restart (docs/operations.md, "Failures").

channels-redis keeps group memberships in Redis, so a restarted Redis (which keeps nothing on disk) forgets every
subscription: SSE streams, WebSockets and runners' stop listeners would wait on channels that nothing sends to any
more, and the receive that was waiting when Redis went away raises ``ConnectionError`` out of the consumer.

This subclass remembers the memberships this process made. When a receive fails it waits, re-adds them all once
Redis answers again, and receives on; readers meanwhile catch up from the database (``streaming.live.reader``), so the
events published while Redis was away are read from the log, not lost. ``degraded`` tells readers to re-read the
database more often until Redis is back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

from channels_redis.core import RedisChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

RETRY_SECONDS = (0.1, 0.25, 0.5, 1.0)
# redis-py's errors are not the builtin ones; OSError covers a socket that fails under it.
CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


class ResilientRedisChannelLayer(RedisChannelLayer):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._memberships: dict[str, set[str]] = defaultdict(set)
        self.degraded = False

    async def group_add(self, group: str, channel: str) -> None:
        self._memberships[channel].add(group)
        await super().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        groups = self._memberships.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._memberships[channel]
        await super().group_discard(group, channel)

    async def receive(self, channel: str) -> Any:
        attempt = 0
        while True:
            if self.degraded and not await self._resubscribe():
                await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
                attempt += 1
                continue
            try:
                return await super().receive(channel)
            except CONNECTION_ERRORS as error:
                self._went_away(error)
            await asyncio.sleep(RETRY_SECONDS[min(attempt, len(RETRY_SECONDS) - 1)])
            attempt += 1

    def _went_away(self, error: BaseException) -> None:
        if not self.degraded:
            logger.warning("Redis connection lost (%s); streams read the database until it is back", error)
        self.degraded = True

    async def _resubscribe(self) -> bool:
        """Re-add every membership of this process; True once Redis took them all."""
        try:
            for channel, groups in list(self._memberships.items()):
                for group in list(groups):
                    await super().group_add(group, channel)
        except CONNECTION_ERRORS:
            return False
        if self.degraded:
            logger.warning("Redis is back; %d subscriptions restored", len(self._memberships))
        self.degraded = False
        return True
