"""Settings load from the environment in one place; bad values stop start-up with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.DATABASES['default']['ENGINE']); print(s.CHANNEL_LAYERS['default']['BACKEND']); "
    "print(s.CACHES['default']['BACKEND']); print(s.DEBUG)"
)


def load(**env: str) -> subprocess.CompletedProcess[str]:
    """Import the settings in a fresh interpreter with exactly this Brook environment."""
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL"}}
    clean.update({"DJANGO_SETTINGS_MODULE": "config.settings", **env})
    return subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.slow  # about 2 s or more: make test-fast leaves it out
def test_debug_defaults_to_sqlite_in_memory_layer_and_local_cache() -> None:
    result = load(DEBUG="1")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.sqlite3",
        "channels.layers.InMemoryChannelLayer",
        "django.core.cache.backends.locmem.LocMemCache",
        "True",
    ]


@pytest.mark.slow  # about 2 s or more: make test-fast leaves it out
def test_database_and_redis_urls_switch_the_backends() -> None:
    result = load(
        DEBUG="0",
        SECRET_KEY="x" * 50,
        ALLOWED_HOSTS="brook.example.com",
        DATABASE_URL="postgres://brook@127.0.0.1:5432/brook",
        REDIS_URL="redis://127.0.0.1:6379/0",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "streaming.live.layers.ResilientRedisChannelLayer",
        "django.core.cache.backends.redis.RedisCache",
        "False",
    ]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "maybe"}, "DEBUG='maybe' is not a boolean"),
        ({"DEBUG": "0"}, "SECRET_KEY must be set when DEBUG is off"),
        ({"DEBUG": "0", "SECRET_KEY": "k" * 50}, "ALLOWED_HOSTS must list"),
        ({"DEBUG": "1", "DATABASE_URL": "mysql://root@localhost/brook"}, "DATABASE_URL has scheme 'mysql'"),
        ({"DEBUG": "1", "DATABASE_URL": "postgres://127.0.0.1:5432"}, "DATABASE_URL names no database"),
        ({"DEBUG": "1", "REDIS_URL": "127.0.0.1:6379"}, "REDIS_URL='127.0.0.1:6379' must look like"),
        ({"DEBUG": "1", "BROOK_SESSION_TOKEN_TTL": "soon"}, "BROOK_SESSION_TOKEN_TTL='soon' is not a whole number"),
        ({"DEBUG": "1", "BROOK_SESSION_TOKEN_TTL": "5"}, "BROOK_SESSION_TOKEN_TTL=5 must be at least 60"),
        ({"DEBUG": "1", "BROOK_DEMO_TOKENS_PER_SECOND": "fast"}, "BROOK_DEMO_TOKENS_PER_SECOND='fast' is not a number"),
        ({"DEBUG": "1", "LOG_FORMAT": "xml"}, "LOG_FORMAT='xml'; use json or plain"),
        ({"DEBUG": "1", "BROOK_HTTPS": "sometimes"}, "BROOK_HTTPS='sometimes' is not a boolean"),
        ({"DEBUG": "1", "BROOK_METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,office"}, "'office' is not a network"),
        ({"DEBUG": "1", "BROOK_DB_THREADS": "1000"}, "BROOK_DB_THREADS=1000"),
        ({"DEBUG": "1", "BROOK_AGENTS": "support"}, "BROOK_AGENTS: 'support' is not name=package.module.Agent"),
        ({"DEBUG": "1", "BROOK_AGENTS": "Big=a.b.C"}, "BROOK_AGENTS: 'Big=a.b.C' is not"),
        ({"DEBUG": "1", "BROOK_AGENTS": "demo=a.b.C"}, "the agent name 'demo' is taken"),
        ({"DEBUG": "1", "BROOK_AGENTS": "x=a.b.C,x=a.b.D"}, "the agent name 'x' is taken"),
        (
            {"DEBUG": "1", "BROOK_AGENTS": "x=sync:no.such.module.f"},
            "BROOK_AGENTS: 'sync:no.such.module.f' does not import",
        ),
    ],
)
def test_a_bad_value_stops_start_up_naming_the_variable(env: dict[str, str], message: str) -> None:
    result = load(**env)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


HARDENING = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.LOGGING['handlers']['console']['formatter'], s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, "
    "s.SECURE_HSTS_SECONDS, getattr(s, 'SECURE_PROXY_SSL_HEADER', None) is not None)"
)


def probe(script: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "LOG_FORMAT", "BROOK_HTTPS"}}
    clean.update({"DJANGO_SETTINGS_MODULE": "config.settings", **env})
    result = subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", script], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.slow  # starts Django in a fresh interpreter several times
def test_production_logs_json_and_https_turns_on_secure_cookies_and_hsts() -> None:
    production = {"DEBUG": "0", "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "brook.example.com"}

    plain_http = probe(HARDENING, **production)
    https_behind_nginx = probe(HARDENING, **production, BROOK_HTTPS="1", BROOK_PROXY_HOPS="1")
    development = probe(HARDENING, DEBUG="1")

    assert plain_http == ["json", "False", "False", "0", "False"]
    assert https_behind_nginx == ["json", "True", "True", "31536000", "True"]
    assert development[0] == "plain"


POOL = (
    "from config import settings as s; d = s.DATABASES['default']; "
    "print(d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'], d.get('OPTIONS', {}).get('pool', {}).get('max_size'))"
)


@pytest.mark.parametrize(
    ("pool_size", "expected"), [("", ["0", "False", "20"]), ("5", ["0", "False", "5"]), ("0", ["60", "True", "None"])]
)
def test_postgresql_gets_a_bounded_connection_pool_unless_turned_off(pool_size: str, expected: list[str]) -> None:
    """Pooled connections are never persistent ones (Django refuses both); 0 turns the pool off."""
    assert (
        probe(POOL, DEBUG="1", DATABASE_URL="postgres://brook@127.0.0.1:5432/brook", DATABASE_POOL_MAX_SIZE=pool_size)
        == expected
    )
