"""Project-level routes: health, OpenAPI, the demo page and the JSON 404 for unknown API paths."""

from __future__ import annotations

from collections.abc import Callable
from unittest import mock

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_healthz_reports_the_database(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_healthz_is_503_when_the_database_does_not_answer(client: Client) -> None:
    with mock.patch("streaming.ops.pages.connection.cursor", side_effect=RuntimeError("db down")):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json()["code"] == "UNHEALTHY"


def test_the_openapi_schema_describes_the_v1_api(client: Client) -> None:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/v1/sessions", "/api/v1/sessions/{session_id}", "/api/v1/sessions/{session_id}/messages"} <= set(paths)
    assert "/api/v1/widget/config" in paths


def test_the_api_docs_page_is_served_without_a_cdn(client: Client) -> None:
    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn.jsdelivr.net" not in html


def test_the_demo_page_embeds_the_widget_for_the_demo_tenant(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<script src="/static/brook/widget.js" data-tenant="demo" data-open="true" async></script>' in html
    # The snippet a tenant copies, with this Brook's address, shown as text:
    assert '&lt;script src="http://testserver/static/brook/widget.js" data-tenant="YOUR_PUBLIC_KEY" async&gt;' in html


def test_unknown_api_paths_answer_json_404(client: Client) -> None:
    response = client.get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"code": "NOT_FOUND", "message": "Nothing is here."}


def test_wrong_methods_answer_json_405(client: Client) -> None:
    response = client.delete("/api/v1/sessions")

    assert response.status_code == 405
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"


def test_the_openapi_schema_validates_without_warnings() -> None:
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_readyz_checks_the_database_migrations_cache_and_channel_layer(client: Client) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "cache": "ok", "channel_layer": "ok"},
    }


def broken(what: str) -> Callable[[], None]:
    def check() -> None:
        raise ConnectionError(f"{what} is down")

    return check


def test_readyz_is_503_naming_the_database_when_it_fails(client: Client) -> None:
    with mock.patch.dict(
        "streaming.ops.pages.READINESS_CHECKS", {"database": broken("database"), "cache": broken("cache")}
    ):
        response = client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "UNHEALTHY" and "database" in body["message"]
    assert body["details"]["checks"] == {"database": "failed", "cache": "failed", "channel_layer": "ok"}


@pytest.mark.parametrize("failing", ["cache", "channel_layer"])
def test_readyz_without_redis_is_degraded_but_keeps_the_worker_in_the_balancer(client: Client, failing: str) -> None:
    with mock.patch.dict("streaming.ops.pages.READINESS_CHECKS", {failing: broken(failing)}):
        response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "checks": {name: "failed" if name == failing else "ok" for name in ("database", "cache", "channel_layer")},
    }


def test_readyz_is_503_while_migrations_are_pending(client: Client) -> None:
    with mock.patch("streaming.ops.pages.MigrationExecutor.migration_plan", return_value=[("a migration", False)]):
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["details"]["checks"]["database"] == "failed"
