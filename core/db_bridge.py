"""Database calls from async code: ``db(fn)(...)`` runs ``fn`` on Brook's database threads (docs/operations.md).

Every runner, stream and long poll of a worker shares one small pool of threads (``BROOK_DB_THREADS``), so an open
stream holds no thread and no connection of its own while it waits: a worker's database connections are bounded by
that pool (plus the request threads of its sync views), not by how many streams are open.

Connections are per thread, as everywhere in Django. Before each call, connections that are broken or past
CONN_MAX_AGE are dropped (Channels' database_sync_to_async does the same). On PostgreSQL with a connection pool
(``DATABASE_POOL_MAX_SIZE``), the connection goes back to the pool after each call, so the request threads share it.
A connection inside a transaction (a test's, or a caller's) is left alone: closing it would break the transaction.
``BROOK_DB_THREADS=0`` runs the calls thread-sensitively instead, on the caller's sync thread, which tests that keep
their data in an uncommitted transaction need.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from asgiref.sync import AsyncToSync, SyncToAsync, async_to_sync, sync_to_async
from django.conf import settings
from django.db import connections

P = ParamSpec("P")
R = TypeVar("R")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def executor() -> ThreadPoolExecutor:
    """This process's database threads, started on first use."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=settings.BROOK_DB_THREADS, thread_name_prefix="brook-db")
        return _executor


def _drop_obsolete_connections() -> None:
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def _close_connections(*, pooled_only: bool) -> None:
    """Close this thread's connections outside a transaction: a pooled one goes back to its pool."""
    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block or (pooled_only and getattr(conn, "pool", None) is None):
            continue
        conn.close()


def _return_pooled_connections() -> None:
    _close_connections(pooled_only=True)


def db(fn: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        _drop_obsolete_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            _return_pooled_connections()

    if settings.BROOK_DB_THREADS == 0:  # tests whose data sits in the test thread's transaction (tests/conftest.py)
        return sync_to_async(call, thread_sensitive=True)
    return sync_to_async(call, thread_sensitive=False, executor=executor())


async def release_request_thread() -> None:
    """Let a long-lived response (an SSE stream, a long poll) wait without a thread of its own.

    Django runs each ASGI request's sync work in a thread of the request's own (asgiref's ThreadSensitiveContext),
    which lives as long as the request: an hour-long stream would keep an idle thread (about 20 KiB, and its
    connection if a sync view opened one) all that time. Once the response only waits on the event loop, this closes
    that thread's connections (back to the pool) and lets the thread end. Anything thread-sensitive later in the
    request (Django's request_finished signal) gets a fresh thread. Outside a request's own context (tests, a caller's
    sync thread) it does nothing.
    """
    context = SyncToAsync.thread_sensitive_context.get(None)
    executors: dict[object, object] | None = getattr(SyncToAsync, "context_to_thread_executor", None)
    if context is None or executors is None or getattr(context, "_executor", None) is not None:
        return  # no request context, an asgiref without per-context executors, or an executor its caller owns
    if getattr(AsyncToSync.executors, "current", None) is not None:
        return  # thread-sensitive calls go to an outer sync thread (async_to_sync): not the request's to end
    if context not in executors:
        return  # no thread was started for this request
    await sync_to_async(_close_connections)(pooled_only=False)  # the thread ends: none of its connections stay
    executor = executors.pop(context, None)
    if isinstance(executor, ThreadPoolExecutor):
        executor.shutdown(wait=False)


def wait_released(fn: Callable[P, Awaitable[R]]) -> Callable[P, R]:
    """From sync code (a DRF view): hand this thread's pooled connections back, then run ``fn`` and wait for it.

    ``async_to_sync`` alone would keep the view's pooled connection while ``fn`` runs, and ``fn``'s own database calls
    need connections from the same pool: a pool's worth of such requests at once would hold every connection and
    wait for one (``make bench`` at 100 concurrent streams: 10 s waits, then 503s). The view gets a connection
    again on its next query.
    """

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        _return_pooled_connections()
        return async_to_sync(fn)(*args, **kwargs)

    return call
