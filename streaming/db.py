"""Database calls from async code: ``db(fn)(...)`` runs ``fn`` in a thread, as Channels' database_sync_to_async.

Like Channels, it drops connections that are broken or past CONN_MAX_AGE before the call, because a runner's
thread lives far longer than a request (Channels also checks after; once per call is enough and saves a round trip
on every write of a stream). Unlike it, it leaves alone a connection inside a transaction (a
test's, or a caller's), which closing would break.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

P = ParamSpec("P")
R = TypeVar("R")


def _drop_obsolete_connections() -> None:
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def db(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        _drop_obsolete_connections()
        return fn(*args, **kwargs)

    return sync_to_async(call, thread_sensitive=True)
