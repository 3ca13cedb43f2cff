"""The admin dashboard in a real browser (Chromium) on a live Brook server: logged in through the admin's own form, its
charts drawn, a tenant's staff kept to their tenant, and the window and tenant choices working (docs/metrics.md)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, cast

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import BrowserContext, Page

from chat.models import ChatSession, FallbackReason, FallbackReport, Message, MessageStatus, Role
from core.errors import ErrorCode
from streaming.ops.dashboard import window
from tenants.models import Tenant, TenantMembership
from tests.conftest import ROOT, daphne_start
from tests.static.conftest import Chromium

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.stack]

PASSWORD = "pw-for-tests-only"
SCREENSHOT = ROOT / "docs" / "img" / "dashboard.png"

# Per chart: how many lines or bars it draws, each line's number of points, and its size on screen.
CHART_SHAPES = """(key) => {
    const svg = document.querySelector(`svg[data-chart="${key}"]`);
    const box = svg.getBoundingClientRect();
    return {
        width: box.width,
        height: box.height,
        lines: Array.from(svg.querySelectorAll("polyline"), (line) => ({
            points: line.points.numberOfItems,
            width: line.getBoundingClientRect().width,
        })),
        bars: Array.from(svg.querySelectorAll("rect.bar"), (bar) => bar.getBoundingClientRect().height),
    };
}"""


@pytest.fixture(scope="module")
def brook(django_db_setup: None) -> Iterator[str]:
    """One Daphne worker on the test database for the module's tests; its base URL."""
    process, port = daphne_start()
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    browser = Chromium()
    yield browser
    browser.close()


@pytest.fixture
def browser(chromium: Chromium) -> Iterator[BrowserContext]:
    """A fresh browser profile, closed before the database is emptied."""
    context = chromium.new_context()
    yield context
    chromium.run(context.close)


def activity(tenant: Tenant, *, per_hour: int) -> None:
    """A few replies in each hour of the dashboard's day for ``tenant``, with varying times to first token, some
    failing, some with a fallback report."""
    session = ChatSession.objects.create(tenant=tenant, visitor_id=f"visitor-of-{tenant.slug}")
    since, _until = window(hours=24, now=timezone.now())
    replies, reports = [], []
    for hour in range(24):
        for n in range(per_hour + hour % 4):
            failed = (hour + n) % 9 == 0
            replies.append(
                Message(
                    session=session,
                    role=Role.ASSISTANT,
                    status=MessageStatus.FAILED if failed else MessageStatus.COMPLETED,
                    error_code=ErrorCode.AGENT_ERROR if failed else "",
                    started_at=since + timedelta(hours=hour, minutes=n),
                    time_to_first_token_ms=300 + 40 * ((hour * 7 + n * 13) % 23) + 1500 * (n == 0),  # one slow
                )
            )
        if hour % 3 == 0:
            reports.append((since + timedelta(hours=hour, minutes=20), FallbackReason.CONNECTION_FAILED))
    for running in replies[-2:]:  # the last two are still going
        running.status, running.error_code = MessageStatus.RUNNING, ""
    Message.objects.bulk_create(replies)
    for at, reason in reports:
        report = FallbackReport.objects.create(
            tenant=tenant, session=session, reason=reason, code="STREAM_001", from_delivery="stream", to_delivery="poll"
        )
        FallbackReport.objects.filter(pk=report.pk).update(created_at=at)


@pytest.fixture
def tenants(tenant: Tenant, other_tenant: Tenant) -> tuple[Tenant, Tenant]:
    Tenant.objects.filter(pk=tenant.pk).update(streaming_percentage=35)
    Tenant.objects.filter(pk=other_tenant.pk).update(streaming_enabled=True, streaming_percentage=10)
    activity(tenant, per_hour=25)
    activity(other_tenant, per_hour=12)
    return tenant, other_tenant


def log_in(chromium: Chromium, browser: BrowserContext, brook: str, username: str) -> Page:
    """Open the dashboard, which sends the browser to the admin's login form; log in there and land back on it."""

    def log_in() -> Page:
        page = browser.new_page()
        page.goto(f"{brook}/admin/dashboard/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_url(f"{brook}/admin/dashboard/")
        return page

    return chromium.run(log_in)


def chart_shapes(chromium: Chromium, page: Page, key: str) -> dict[str, Any]:
    return cast(dict[str, Any], chromium.run(lambda: page.evaluate(CHART_SHAPES, key)))


def test_tenant_staff_see_their_tenants_charts_and_rollout_and_nothing_of_another_tenant(
    chromium: Chromium, browser: BrowserContext, brook: str, tenants: tuple[Tenant, Tenant]
) -> None:
    ours, _theirs = tenants
    user = User.objects.create_user(username="acme-staff", password=PASSWORD, is_staff=True)
    TenantMembership.objects.create(user=user, tenant=ours)

    page = log_in(chromium, browser, brook, "acme-staff")

    ttft, rates, volume = (chart_shapes(chromium, page, key) for key in ("ttft", "rates", "volume"))
    for shapes in (ttft, rates, volume):
        assert shapes["width"] > 300 and shapes["height"] > 100
    assert len(ttft["lines"]) == 3 and len(rates["lines"]) == 2  # no gaps: every hour had replies
    for line in ttft["lines"] + rates["lines"]:
        assert line["points"] == 24 and line["width"] > 200
    assert len(volume["bars"]) == 24 and min(volume["bars"]) > 0
    rollout = chromium.run(lambda: page.locator('tr[data-tenant="acme-shop"] td.rollout').text_content())
    assert rollout == "35 %"
    html = chromium.run(page.content)
    assert "Acme Shop" in html
    assert "Globex" not in html and "globex" not in html


def test_a_superuser_switches_window_and_tenant(
    chromium: Chromium, browser: BrowserContext, brook: str, tenants: tuple[Tenant, Tenant]
) -> None:
    User.objects.create_superuser(username="root", email="root@example.com", password=PASSWORD)
    page = log_in(chromium, browser, brook, "root")
    assert chromium.run(lambda: page.locator("#tenants tbody tr").count()) == 2
    SCREENSHOT.parent.mkdir(exist_ok=True)
    chromium.run(lambda: page.screenshot(path=SCREENSHOT, full_page=True))

    def last_hour() -> None:
        page.click("text=Last hour")
        page.wait_for_url("**/admin/dashboard/?hours=1")

    chromium.run(last_hour)

    assert chromium.run(lambda: page.locator("a[aria-current=page]").text_content()) == "Last hour"
    assert len(chart_shapes(chromium, page, "volume")["bars"]) == 12  # five-minute buckets

    def pick_globex() -> None:
        page.select_option("#dashboard-tenant", "globex")
        page.click("input[value=Show]")
        page.wait_for_url("**/admin/dashboard/?hours=1&tenant=globex")

    chromium.run(pick_globex)

    assert chromium.run(lambda: page.locator("#tenants tbody tr").all_text_contents())[0].split()[0] == "Globex"
    assert chromium.run(lambda: page.locator("#tenants tbody tr").count()) == 1
    assert SCREENSHOT.read_bytes().startswith(b"\x89PNG")
