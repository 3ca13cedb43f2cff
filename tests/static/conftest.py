"""Browser tests of the chat widget: one live Brook server and one Chromium per module, a fresh browser per test.

The server paces the demo agent like a model (a reply takes a few seconds), so that a test can watch a reply stream,
stop it, or cut its connection half-way.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    Playwright,
    ViewportSize,
    sync_playwright,
)

from tenants.models import Tenant
from tenants.services import tenant_ensure_demo, tenant_update
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.conftest import Server, daphne_start

VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
TOKENS_PER_SECOND = "40"  # a three-part answer streams for about three seconds
STEP_SECONDS = "0.05"
WAIT_MS = 15_000

T = TypeVar("T")


@pytest.fixture(scope="module")
def brook(django_db_setup: None) -> Iterator[str]:
    """One Daphne worker on the test database for the module's tests; its base URL."""
    process, port = daphne_start(BROOK_DEMO_TOKENS_PER_SECOND=TOKENS_PER_SECOND, BROOK_DEMO_STEP_SECONDS=STEP_SECONDS)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def demo_tenant(transactional_db: None) -> Tenant:
    """The demo tenant that the page at `/` embeds."""
    tenant, _created = tenant_ensure_demo()
    # Every test starts a session from 127.0.0.1 on the same server, whose in-memory rate counters (SQLite runs)
    # outlive each test's cache.clear().
    return tenant_update(tenant=tenant, sessions_per_ip_per_minute=1000)


class Chromium:
    """Debian's Chromium, driven by Playwright's sync API on a thread of its own: between calls that API marks its
    thread as running an asyncio loop, and Django's ORM, in the test's thread, must not see one."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chromium")
        self._playwright: Playwright = self.run(lambda: sync_playwright().start())
        self._browser: Browser = self.run(
            lambda: self._playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        )

    def run(self, call: Callable[[], T]) -> T:
        """``call()``, on the browser's thread."""
        return self._thread.submit(call).result()

    def new_context(self) -> BrowserContext:
        """A fresh browser profile: no storage, no cache."""

        def new() -> BrowserContext:
            context = self._browser.new_context(viewport=VIEWPORT)
            context.set_default_timeout(WAIT_MS)
            return context

        return self.run(new)

    def close(self) -> None:
        self.run(self._browser.close)
        self.run(self._playwright.stop)
        self._thread.shutdown()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    browser = Chromium()
    yield browser
    browser.close()


OpenWidget = Callable[[str], "Widget"]


@pytest.fixture
def open_widget(chromium: Chromium, demo_tenant: Tenant) -> Iterator[OpenWidget]:
    """Open the demo page at a base URL in a fresh browser; the browser is closed before the database is emptied."""
    contexts: list[BrowserContext] = []

    def open_at(base_url: str) -> Widget:
        context = chromium.new_context()
        contexts.append(context)
        return Widget(chromium, chromium.run(context.new_page), base_url).open()

    yield open_at
    for context in contexts:
        chromium.run(context.close)


@pytest.fixture
def widget(open_widget: OpenWidget, brook: str) -> Widget:
    """The demo page, straight from Brook, with its widget ready."""
    return open_widget(brook)


def about_last_reply(condition: str) -> str:
    """A page function: whether ``condition`` holds of ``reply``, the last assistant reply in the widget."""
    return f"""() => {{
        const replies = document.querySelector("#brook-widget").shadowRoot.querySelectorAll(".message.assistant");
        const reply = replies[replies.length - 1];
        return !!reply && ({condition});
    }}"""


# Notes every distinct text of the last reply's answer, whether the reply was streaming then, and its steps' titles.
RECORD_ANSWERS = """() => {
    const root = document.querySelector("#brook-widget").shadowRoot;
    window.__answers = [];
    const record = () => {
        const replies = root.querySelectorAll(".message.assistant");
        const reply = replies[replies.length - 1];
        if (!reply) return;
        const text = reply.querySelector(".answer").textContent;
        const last = window.__answers[window.__answers.length - 1];
        if (last && last.text === text) return;
        window.__answers.push({
            text: text,
            streaming: reply.classList.contains("streaming"),
            steps: Array.from(reply.querySelectorAll(".step .title"), (title) => title.textContent),
        });
    };
    new MutationObserver(record).observe(root, {subtree: true, childList: true, characterData: true});
}"""


class Widget:
    """The demo page's chat widget in a browser tab, used as a visitor would; it keeps what the console said.

    Selectors pierce the widget's open shadow root; every browser call runs on the browser's thread.
    """

    def __init__(self, chromium: Chromium, page: Page, base_url: str) -> None:
        self.run = chromium.run
        self.page = page
        self.base_url = base_url
        self.console: list[ConsoleMessage] = []
        self.run(lambda: page.on("console", self._heard))

    def _heard(self, message: ConsoleMessage) -> None:
        self.console.append(message)

    def _in(self, selector: str) -> Locator:
        return self.page.locator(f"#brook-widget {selector}")

    @property
    def _reply(self) -> Locator:
        return self._in(".message.assistant").last

    # --- Doing ---------------------------------------------------------------------------------------------------

    def open(self) -> Widget:
        """Load the demo page; done once the widget has its session and shows the history."""
        self.run(lambda: self.page.goto(self.base_url + "/"))
        self.run(lambda: self.page.wait_for_function("window.BrookWidget !== undefined"))
        return self

    def reload(self) -> None:
        self.run(self.page.reload)
        self.run(lambda: self.page.wait_for_function("window.BrookWidget !== undefined"))

    def send(self, text: str) -> None:
        """Type ``text`` and press Enter."""

        def send() -> None:
            self._in("textarea").fill(text)
            self._in("textarea").press("Enter")

        self.run(send)

    def send_and_wait_for_response(self, text: str, url_ending: str) -> int:
        """Send ``text``; the status of the first response after it whose URL ends with ``url_ending``."""

        def send() -> int:
            with self.page.expect_response(lambda response: response.url.endswith(url_ending)) as response:
                self._in("textarea").fill(text)
                self._in("textarea").press("Enter")
            return response.value.status

        return self.run(send)

    def click(self, selector: str) -> None:
        self.run(lambda: self._in(selector).click())

    def press(self, key: str) -> None:
        self.run(lambda: self.page.keyboard.press(key))

    def block(self, url_pattern: Any) -> None:
        """Make every request to URLs matching ``url_pattern`` fail, as a proxy or an extension might."""
        self.run(lambda: self.page.route(url_pattern, lambda route: route.abort()))

    def export(self) -> dict[str, Any]:
        """Click the last reply's "Export JSON"; the downloaded file, parsed."""

        def export() -> dict[str, Any]:
            with self.page.expect_download() as download:
                self._reply.locator(".export").click()
            return cast(dict[str, Any], json.loads(Path(download.value.path()).read_text()))

        return self.run(export)

    def screenshot(self, path: Path) -> None:
        self.run(lambda: self.page.screenshot(path=path))

    # --- Waiting -------------------------------------------------------------------------------------------------

    def wait_for_text(self) -> None:
        """Until part of the answer is on screen while the reply is still streaming."""
        condition = 'reply.classList.contains("streaming") && reply.querySelector(".answer").textContent'
        self.run(lambda: self.page.wait_for_function(about_last_reply(condition)))

    def wait_until_finished(self) -> None:
        """Until the reply has ended (completed, stopped or failed) and shows its final stats."""
        condition = '!reply.classList.contains("streaming") && reply.querySelector(".stats").textContent'
        self.run(lambda: self.page.wait_for_function(about_last_reply(condition)))

    # --- Seeing --------------------------------------------------------------------------------------------------

    def answer(self) -> str:
        """The last reply's answer as text (without the "(stopped)" mark, which is CSS)."""
        return self.run(lambda: cast(str, self._reply.locator(".answer").text_content()))

    def message_id(self) -> str:
        return self.run(lambda: cast(str, self._reply.get_attribute("data-message-id")))

    def reply_classes(self) -> list[str]:
        return self.run(lambda: str(self._reply.get_attribute("class")).split())

    def stats(self) -> str:
        return self.run(lambda: cast(str, self._reply.locator(".stats").text_content()))

    def step_titles(self) -> list[str]:
        return self.run(lambda: self._reply.locator(".step .title").all_text_contents())

    def texts(self, selector: str) -> list[str]:
        return self.run(lambda: self._in(selector).all_text_contents())

    def count(self, selector: str) -> int:
        return self.run(lambda: self._in(selector).count())

    def is_enabled(self, selector: str) -> bool:
        return self.run(lambda: self._in(selector).is_enabled())

    def panel_box(self) -> dict[str, float] | None:
        """Where the chat panel is on screen, if it is visible."""
        return self.run(lambda: cast(dict[str, float] | None, self._in(".panel").bounding_box()))

    def evaluate(self, expression: str) -> Any:
        return self.run(lambda: self.page.evaluate(expression))

    def record_answers(self) -> None:
        """From now on, note every text the last reply's answer shows (see ``answers``)."""
        self.run(lambda: self.page.evaluate(RECORD_ANSWERS))

    def answers(self) -> list[dict[str, Any]]:
        """Each text the answer showed since ``record_answers``: ``{"text", "streaming", "steps"}``, in order."""
        return cast(list[dict[str, Any]], self.evaluate("window.__answers"))

    def warnings_and_errors(self) -> list[str]:
        """What the page logged as a warning or an error, with the URL it came from."""
        return [f"{m.type}: {m.text} ({m.location.get('url')})" for m in self.console if m.type in {"warning", "error"}]


class Proxy:
    """A TCP relay in front of Brook whose open connections can all be dropped at once, as a failing network would."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Drop every connection open now; new ones are relayed as before."""
        with self._lock:
            dropped, self._open = self._open, set()
        for sock in dropped:
            _drop(sock)

    def close(self) -> None:
        self._closed.set()
        self.listener.close()
        self.cut()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                client, _address = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            with self._lock:
                self._open |= {client, upstream}
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._relay, args=(source, target), daemon=True).start()

    def _relay(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):  # cut, or closed by the other side
            while chunk := source.recv(65536):
                target.sendall(chunk)
        with self._lock:
            self._open -= {source, target}
        _drop(source)
        _drop(target)


def _drop(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)  # wakes the relay thread blocked in recv()
    sock.close()


@pytest.fixture
def proxy(server: Server) -> Iterator[Proxy]:
    """A cuttable relay in front of a Brook worker of its own, paced so that a reply outlasts the 3 s that
    EventSource waits before it reconnects (the server's `retry: 3000`)."""
    relay = Proxy(server(BROOK_DEMO_TOKENS_PER_SECOND="20", BROOK_DEMO_STEP_SECONDS=STEP_SECONDS))
    yield relay
    relay.close()
