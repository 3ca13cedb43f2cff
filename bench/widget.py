"""`make bench-widget`: the chat widget on a 10,000-token reply, in Debian's Chromium (docs/widget.md).

Seed 001's targets: the JS heap stays under 50 MB and the widget causes no long task over 50 ms. A local fake model
API (OpenAI-compatible, the same one the provider tests use) streams 2,000 reasoning tokens and 10,000 answer tokens,
one per chunk; Brook's `llm` agent relays them; the demo page's widget shows them over SSE. The script prints the
heap (peak while streaming, and after a garbage collection at the end), the long tasks the browser reported, the
frames the widget rendered and the reply's duration. Not a test: a figure for the docs.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.streaming.agents.providers.fake_upstream import FakeUpstream, openai_chunk, openai_usage  # noqa: E402

ANSWER_TOKENS = 10_000
REASONING_TOKENS = 2_000
SECONDS_PER_CHUNK = 0.0004
# Precise heap figures, and gc() in the page to read the heap after a collection.
BENCH_ARGS = [*CHROMIUM_ARGS, "--enable-precise-memory-info", "--js-flags=--expose-gc"]
# Collected in the page from its first script on: long tasks, the heap every 100 ms, and animation frames.
PROBE = """
window.__bench = {longTasks: [], heapPeak: 0, frames: 0};
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__bench.longTasks.push(entry.duration);
}).observe({type: "longtask", buffered: true});
setInterval(() => {
  window.__bench.heapPeak = Math.max(window.__bench.heapPeak, performance.memory.usedJSHeapSize);
}, 100);
const raf = window.requestAnimationFrame.bind(window);
window.requestAnimationFrame = (callback) => raf((now) => { window.__bench.frames += 1; callback(now); });
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)  # noqa: S603


def script(upstream: FakeUpstream) -> None:
    events: list[Any] = [openai_chunk(reasoning_content=f"r{n} ") for n in range(REASONING_TOKENS)]
    events += [openai_chunk(content=f"t{n} ") for n in range(ANSWER_TOKENS)]
    events += [openai_chunk(finish="stop"), openai_usage(12, ANSWER_TOKENS + REASONING_TOKENS, REASONING_TOKENS)]
    upstream.add(events=events, delay_each=SECONDS_PER_CHUNK)


MODES = [("coalesced deltas (BROOK_DELTA_FLUSH_MS=300, the default)", "300"), ("one SSE event per token (=0)", "0")]
ROUNDS = 3


def main() -> None:
    machine = platform.processor() or platform.machine()
    print(f"Brook widget, {platform.node()} ({machine}, {os.cpu_count()} cores), {datetime.now(UTC):%Y-%m-%d}")
    print(f"  {ANSWER_TOKENS:,} answer + {REASONING_TOKENS:,} reasoning tokens, one per upstream chunk, over SSE;")
    print("  the fake model, Brook and Chromium share this machine. Goals: heap < 50 MB, no long task over 50 ms.")
    results = {}
    for label, flush_ms in MODES:
        print(f"\n  {label}")
        results[flush_ms] = [measure(flush_ms) for _ in range(ROUNDS)]
    print(json.dumps(results))


def measure(flush_ms: str) -> dict[str, Any]:
    """One reply through a fresh Brook (its own database) with ``BROOK_DELTA_FLUSH_MS=flush_ms``."""
    upstream = FakeUpstream().start()
    script(upstream)
    port = free_port()
    env = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3",
        "BROOK_SWEEP_SECONDS": "0",
        "BROOK_DELTA_FLUSH_MS": flush_ms,
        "BROOK_LLM_BASE_URL": upstream.base_url,
        "BROOK_LLM_MODEL": "bench-model",
        "BROOK_LLM_API_KEY": "bench-key",
    }
    env.pop("REDIS_URL", None)
    manage(env, "migrate", "--noinput")
    manage(env, "brook_setup")
    manage(env, "tenants", "set", "demo", "agent=llm", "llm_tools_enabled=false", "max_stream_seconds=600")
    server = subprocess.Popen(  # noqa: S603 - our own server
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        return run(port)
    finally:
        server.terminate()
        server.wait(timeout=10)
        upstream.stop()


def run(port: int) -> dict[str, Any]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=BENCH_ARGS)
        page = browser.new_page()
        page.add_init_script(PROBE)
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("#brook-widget textarea").wait_for()
        baseline = page.evaluate("gc(); performance.memory.usedJSHeapSize")
        started = time.monotonic()
        page.locator("#brook-widget textarea").fill("Write me something very long.")
        page.keyboard.press("Enter")
        page.locator("#brook-widget .message.assistant.streaming").wait_for(timeout=30_000)
        page.locator("#brook-widget .message.assistant:not(.streaming)").wait_for(timeout=300_000)
        elapsed = time.monotonic() - started
        answer = page.locator("#brook-widget .answer").last.text_content() or ""
        after_gc = page.evaluate("gc(); performance.memory.usedJSHeapSize")
        bench = page.evaluate("window.__bench")
        browser.close()
    long_tasks = bench["longTasks"]
    figures = {
        "answer_whole_and_in_order": answer == "".join(f"t{n} " for n in range(ANSWER_TOKENS)),
        "reply_seconds": round(elapsed, 2),
        "frames": bench["frames"],
        "heap_mb_before": round(baseline / 2**20, 1),
        "heap_mb_peak": round(bench["heapPeak"] / 2**20, 1),
        "heap_mb_after_gc": round(after_gc / 2**20, 1),
        "long_tasks": len(long_tasks),
        "longest_task_ms": round(max(long_tasks), 1) if long_tasks else 0,
    }
    print(
        f"    reply {figures['reply_seconds']:5.1f} s, {figures['frames']:4} frames; "
        f"heap {figures['heap_mb_before']} MB before, {figures['heap_mb_peak']} MB peak, "
        f"{figures['heap_mb_after_gc']} MB after GC; long tasks {figures['long_tasks']} "
        f"(longest {figures['longest_task_ms']} ms); answer whole: {figures['answer_whole_and_in_order']}"
    )
    return figures


if __name__ == "__main__":
    main()
