"""Prometheus metrics, per tenant (docs/metrics.md): what happened to replies and streams. ``streaming.ops.prometheus``
serves them at ``/metrics``.

One process (``make run``) counts in memory. Several worker processes (``make run-prod``) each write their values
to files under ``PROMETHEUS_MULTIPROC_DIR``, and ``/metrics`` on any worker adds up every worker's files
(prometheus-client's multiprocess mode); the gauges of active streams and replies count live processes only.

Recording never fails a reply: every ``record_*`` swallows and logs its own errors.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, multiprocess
from prometheus_client import generate_latest as _generate_latest

logger = logging.getLogger(__name__)

P = ParamSpec("P")

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")

# Seconds; time to first token is mostly the model's, so the buckets run from 50 ms to a minute.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0)
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0)

REPLIES_STARTED = Counter("brook_replies_started", "Replies an agent started running.", ["tenant", "delivery"])
REPLIES_ENDED = Counter(
    "brook_replies_ended",
    "Replies that ended, by outcome: completed, failed, cancelled, interrupted.",
    ["tenant", "delivery", "outcome"],
)
ERRORS = Counter("brook_reply_errors", "Failed or interrupted replies, by error code.", ["tenant", "code"])
FALLBACKS = Counter(
    "brook_fallbacks", "Widgets that left one delivery for another, by reason.", ["tenant", "reason", "to_delivery"]
)
TOKENS = Counter("brook_tokens", "Model tokens of ended replies, as the provider reported them.", ["tenant", "kind"])
TIME_TO_FIRST_TOKEN = Histogram(
    "brook_time_to_first_token_seconds",
    "From the reply's start to the agent's first token (text or reasoning).",
    ["tenant"],
    buckets=TTFT_BUCKETS,
)
DURATION = Histogram(
    "brook_reply_duration_seconds",
    "From the reply's start to its end.",
    ["tenant", "outcome"],
    buckets=DURATION_BUCKETS,
)
ACTIVE_STREAMS = Gauge(
    "brook_active_streams",
    "Open streams: SSE connections, WebSocket connections and long polls.",
    ["tenant", "transport"],
    multiprocess_mode="livesum",
)
ACTIVE_REPLIES = Gauge(
    "brook_active_replies", "Replies an agent is running now.", ["tenant"], multiprocess_mode="livesum"
)


def _never_raises(record: Callable[P, None]) -> Callable[P, None]:
    @functools.wraps(record)
    def safe(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            record(*args, **kwargs)
        except Exception:
            logger.exception("Could not record metric %s", record.__name__)

    return safe


@_never_raises
def record_reply_started(*, tenant: str, delivery: str) -> None:
    REPLIES_STARTED.labels(tenant, delivery).inc()


@_never_raises
def record_reply_ended(
    *,
    tenant: str,
    delivery: str,
    outcome: str,
    error_code: str = "",
    duration_ms: int | None = None,
    time_to_first_token_ms: int | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    reasoning_tokens: int | None = None,
) -> None:
    REPLIES_ENDED.labels(tenant, delivery, outcome).inc()
    if error_code:
        ERRORS.labels(tenant, error_code).inc()
    if duration_ms is not None:
        DURATION.labels(tenant, outcome).observe(duration_ms / 1000)
    if time_to_first_token_ms is not None:
        TIME_TO_FIRST_TOKEN.labels(tenant).observe(time_to_first_token_ms / 1000)
    for kind, count in (("prompt", prompt_tokens), ("completion", completion_tokens), ("reasoning", reasoning_tokens)):
        if count:
            TOKENS.labels(tenant, kind).inc(count)


@_never_raises
def record_fallback(*, tenant: str, reason: str, to_delivery: str) -> None:
    FALLBACKS.labels(tenant, reason, to_delivery).inc()


@contextmanager
def active_stream(*, tenant: str, transport: str) -> Iterator[None]:
    """Count an open stream while the block runs."""
    gauge = ACTIVE_STREAMS.labels(tenant, transport)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


@contextmanager
def active_reply(*, tenant: str) -> Iterator[None]:
    gauge = ACTIVE_REPLIES.labels(tenant)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


def _forget_this_process() -> None:
    """At exit, drop this process's live gauges from the shared directory (their values no longer exist)."""
    multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


if MULTIPROCESS_DIR:
    atexit.register(_forget_this_process)


def generate_latest() -> bytes:
    """The exposition text: every worker's values in multiprocess mode, else this process's."""
    if MULTIPROCESS_DIR:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
        return _generate_latest(registry)
    return _generate_latest(REGISTRY)
