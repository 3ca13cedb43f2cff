"""The admin dashboard (streaming/ops/dashboard.py, streaming/ops/charts.py): who sees which tenants' numbers, the
window and tenant choices, bad queries, and the SVG charts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from pytest_django import Settings

from chat.models import ChatSession, FallbackReason, FallbackReport, Message, MessageStatus, Role
from core.errors import ErrorCode
from streaming.ops.charts import Series, chart
from streaming.ops.dashboard import window
from tenants.models import Tenant
from tests.conftest import tenant_staff_client

pytestmark = pytest.mark.django_db

URL = "/admin/dashboard/"


@pytest.fixture(autouse=True)
def fast_passwords(settings: Settings) -> None:
    """Users made here log in with force_login: their passwords need not be hashed slowly."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def replies(tenant: Tenant, count: int, status: MessageStatus = MessageStatus.COMPLETED, **fields: object) -> None:
    """``count`` replies of ``tenant`` that started ten minutes ago, each with a fallback report."""
    session = ChatSession.objects.create(tenant=tenant, visitor_id="visitor")
    started = timezone.now() - timedelta(minutes=10)
    for n in range(count):
        Message.objects.create(
            session=session,
            role=Role.ASSISTANT,
            status=status,
            started_at=started,
            time_to_first_token_ms=100 * (n + 1),
            **fields,
        )
        FallbackReport.objects.create(
            tenant=tenant,
            session=session,
            reason=FallbackReason.TIMEOUT,
            code="STREAM_004",
            from_delivery="stream",
            to_delivery="poll",
        )


@pytest.fixture
def activity(tenant: Tenant, other_tenant: Tenant) -> None:
    """Acme Shop: 3 completed replies, rollout at 35 %. Globex: 2 failed ones."""
    Tenant.objects.filter(pk=tenant.pk).update(streaming_percentage=35)
    replies(tenant, 3)
    replies(other_tenant, 2, MessageStatus.FAILED, error_code=ErrorCode.AGENT_ERROR)


def rows(response: object) -> list[tuple[str, int]]:
    return [(row.slug, row.tally.started) for row in response.context["rows"]]  # type: ignore[attr-defined]


def test_a_superuser_sees_every_tenant_together(staff_client: Client, activity: None) -> None:
    response = staff_client.get(URL)

    assert response.status_code == 200
    assert rows(response) == [("acme-shop", 3), ("globex", 2)]
    total = response.context["total"]
    assert (total.started, total.completed, total.failed, total.fallbacks) == (5, 3, 2, 5)
    html = response.content.decode()
    assert "All tenants" in html and "Acme Shop" in html and "Globex" in html
    assert "AGENT_ERROR" in html
    for key in ("ttft", "rates", "volume"):
        assert re.search(rf'<svg [^>]*role="img" aria-label="[^"]+" data-chart="{key}"', html)


def test_a_superuser_can_pick_one_tenant(staff_client: Client, activity: None) -> None:
    response = staff_client.get(URL, {"tenant": "globex"})

    assert response.status_code == 200
    assert rows(response) == [("globex", 2)]
    assert response.context["total"].started == 2
    assert 'href="?hours=1&amp;tenant=globex"' in response.content.decode()  # the window links keep the tenant


def test_tenant_staff_see_only_their_tenant_and_its_rollout(tenant: Tenant, activity: None) -> None:
    response = tenant_staff_client(tenant).get(URL)

    assert response.status_code == 200
    assert rows(response) == [("acme-shop", 3)]
    total = response.context["total"]
    assert (total.started, total.failed, total.fallbacks) == (3, 0, 3)
    html = response.content.decode()
    assert re.search(r'<tr data-tenant="acme-shop">.*?<td class="number rollout">35 %</td>', html, re.DOTALL)
    for theirs in ("Globex", "globex", "AGENT_ERROR", "All tenants"):
        assert theirs not in html


def test_tenant_staff_naming_another_tenant_get_404_like_a_missing_one(tenant: Tenant, other_tenant: Tenant) -> None:
    client = tenant_staff_client(tenant)

    assert client.get(URL, {"tenant": other_tenant.slug}).status_code == 404
    assert client.get(URL, {"tenant": "no-such-tenant"}).status_code == 404
    assert client.get(URL, {"tenant": tenant.slug}).status_code == 200


def test_a_missing_tenant_is_404_for_a_superuser_too(staff_client: Client, tenant: Tenant) -> None:
    assert staff_client.get(URL, {"tenant": "no-such-tenant"}).status_code == 404


def staff(*permissions: str) -> Client:
    user = User.objects.create_user(username="helpdesk", password="pw-for-tests-only", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=permissions))
    client = Client()
    client.force_login(user)
    return client


def test_staff_without_a_tenant_who_may_view_tenants_see_every_tenant(activity: None) -> None:
    response = staff("view_tenant").get(URL)

    assert response.status_code == 200
    assert rows(response) == [("acme-shop", 3), ("globex", 2)]


def test_other_staff_are_refused(tenant: Tenant) -> None:
    assert staff("view_message").get(URL).status_code == 403


def test_anonymous_visitors_are_sent_to_the_login_page(db: None) -> None:
    response = Client().get(URL)

    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={URL}"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({"hours": "2"}, "hours: Select a valid choice. 2 is not one of the available choices."),
        ({"hours": "a day"}, "hours: Select a valid choice."),
        ({"tenant": "<b>acme shop</b>"}, "tenant: Enter a valid “slug”"),
    ],
)
def test_a_bad_query_answers_400_with_the_reason(staff_client: Client, query: dict[str, str], reason: str) -> None:
    response = staff_client.get(URL, query)

    assert response.status_code == 400
    html = response.content.decode()
    assert reason in html
    assert "<b>acme shop</b>" not in html
    assert 'href="?hours=24"' in html  # and the way back


@pytest.mark.parametrize(
    ("hours", "buckets", "label"), [(1, 12, "Last hour"), (24, 24, "Last 24 hours"), (168, 28, "Last 7 days")]
)
def test_each_window_has_its_buckets_and_is_marked_as_chosen(
    staff_client: Client, activity: None, hours: int, buckets: int, label: str
) -> None:
    response = staff_client.get(URL, {"hours": hours})

    assert response.status_code == 200
    assert len(response.context["stats"].buckets) == buckets
    assert f'<a href="?hours={hours}" aria-current="page">{label}</a>' in response.content.decode()
    assert response.context["total"].started == 5  # ten minutes ago is in every window


def test_the_window_ends_with_the_bucket_now_is_in() -> None:
    now = datetime(2025, 3, 3, 14, 37, 12, tzinfo=UTC)

    assert window(hours=1, now=now) == (
        datetime(2025, 3, 3, 13, 40, tzinfo=UTC),
        datetime(2025, 3, 3, 14, 40, tzinfo=UTC),
    )
    assert window(hours=24, now=now) == (datetime(2025, 3, 2, 15, tzinfo=UTC), datetime(2025, 3, 3, 15, tzinfo=UTC))
    assert window(hours=168, now=now) == (datetime(2025, 2, 24, 18, tzinfo=UTC), datetime(2025, 3, 3, 18, tzinfo=UTC))


def test_the_page_asks_the_database_the_same_number_of_times_however_many_replies(
    staff_client: Client, tenant: Tenant
) -> None:
    replies(tenant, 1)
    staff_client.get(URL)  # the session, the user and the permissions are cached from here on
    with CaptureQueriesContext(connection) as few:
        staff_client.get(URL)
    replies(tenant, 20)
    with CaptureQueriesContext(connection) as many:
        staff_client.get(URL)

    assert len(many) == len(few)


def test_the_admin_links_to_the_dashboard_for_those_who_may_see_it(staff_client: Client, tenant: Tenant) -> None:
    link = f'<a href="{URL}">Dashboard</a>'

    assert link in staff_client.get("/admin/").content.decode()
    assert link in tenant_staff_client(tenant).get("/admin/").content.decode()
    assert link not in staff("view_message").get("/admin/").content.decode()


# --- Charts -------------------------------------------------------------------------------------------------------


def test_a_line_chart_breaks_where_a_series_has_no_value_and_names_every_point() -> None:
    svg = chart(
        key="ttft",
        label="TTFT",
        x_labels=["a", "b", "c", "d", "e"],
        x_titles=["A", "B", "C", "D", "E"],
        unit=" ms",
        series=[Series("p50", [100, 200, None, 300, 400], "#000")],
    )

    assert svg.count("<polyline") == 2  # a-b, then d-e
    assert "<title>p50, D: 300 ms</title>" in svg
    assert svg.count("<circle") == 4


def test_a_lone_point_between_gaps_is_a_dot() -> None:
    svg = chart(
        key="rates",
        label="Rates",
        x_labels=["a", "b", "c"],
        x_titles=["A", "B", "C"],
        series=[Series("Errors", [None, 12.5, None], "#000")],
    )

    assert "<polyline" not in svg
    assert "<title>Errors, B: 12.5</title>" in svg


def test_a_bar_chart_has_a_bar_per_value_and_whole_ticks() -> None:
    svg = chart(
        key="volume",
        label="Replies",
        x_labels=["a", "b", "c"],
        x_titles=["A", "B", "C"],
        kind="bar",
        whole=True,
        series=[Series("Replies", [0, 3, 1], "#000")],
    )

    assert svg.count('<rect class="bar"') == 3
    ticks = re.findall(r'text-anchor="end" dominant-baseline="middle">([^<]*)</text>', svg)
    assert ticks == ["0", "1", "2", "3"]


def test_a_chart_without_data_says_so() -> None:
    svg = chart(key="ttft", label="TTFT", x_labels=["a"], x_titles=["A"], series=[Series("p50", [None], "#000")])

    assert "No data in this window" in svg


def test_a_chart_escapes_its_texts() -> None:
    svg = chart(
        key='x"y',
        label="<script>",
        x_labels=["<a>"],
        x_titles=["<b>"],
        series=[Series("<i>", [1], "red")],
    )

    assert "<script>" not in svg and "<a>" not in svg and "<b>" not in svg and "<i>" not in svg
    assert 'data-chart="x&quot;y"' in svg and 'aria-label="&lt;script&gt;"' in svg


def test_x_labels_are_sparse() -> None:
    svg = chart(
        key="v",
        label="V",
        x_labels=[str(n) for n in range(28)],
        x_titles=[""] * 28,
        series=[Series("V", [1] * 28, "red")],
    )

    assert len(re.findall(r'class="x-label"', svg)) == 7  # every fourth of 28
