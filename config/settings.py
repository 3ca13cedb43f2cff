"""Brook's settings: the environment is read here and nowhere else.

Every integration has an embedded default and is switched by one variable (README, "Configuration"):
no ``DATABASE_URL`` means SQLite, no ``REDIS_URL`` means an in-memory channel layer and a local-memory cache.
A bad value stops start-up with ``ImproperlyConfigured`` naming the variable.

See docs/operations.md, "Environment variables".
"""

from __future__ import annotations

import ipaddress
import os
import re
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

# Lets admin and other Django generics take type parameters at run time (ModelAdmin[Tenant]), as mypy wants.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use one of 1/0, true/false, yes/no, on/off.")


def _int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and at most {maximum}"
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}{upper}.")
    return value


def _float(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}.")
    return value


def _database(url: str) -> dict[str, Any]:
    scheme = urlsplit(url).scheme
    if scheme not in {"sqlite", "postgres", "postgresql", "pgsql"}:
        raise ImproperlyConfigured(
            f"DATABASE_URL has scheme {scheme!r}; Brook supports sqlite:///path and postgres://user@host:port/name."
        )
    config: dict[str, Any] = env.db_url_config(url)
    # Runners and streams call the database from a few long-lived threads (core/db_bridge.py): keep their
    # connections, check them before use.
    config["CONN_MAX_AGE"] = _int("DATABASE_CONN_MAX_AGE", 60)
    config["CONN_HEALTH_CHECKS"] = True
    if scheme == "sqlite":
        # WAL and IMMEDIATE transactions let the runner write while readers poll, without "database is locked".
        config["OPTIONS"] = {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        # Tests use a file too: an in-memory shared-cache database locks whole tables instead of waiting, unlike
        # the file Brook really runs on.
        config["TEST"] = {"NAME": str(Path(tempfile.gettempdir()) / f"brook-test-{os.getpid()}.sqlite3")}
    else:
        if not config.get("NAME"):
            raise ImproperlyConfigured("DATABASE_URL names no database, e.g. postgres://postgres@127.0.0.1:5432/brook.")
        # Under ASGI each request to a sync view runs in a thread of its own: a pool bounds the process's
        # connections and lends them out per request and per core/db_bridge.py call (0 = no pool, persistent
        # connections per thread as CONN_MAX_AGE says). Pooled connections are not persistent ones.
        pool_size = _int("DATABASE_POOL_MAX_SIZE", 20, maximum=1000)
        if pool_size:
            config["CONN_MAX_AGE"] = 0
            # With a pool, Django's health check becomes a query on every borrow (one more round trip and transaction
            # per database call). A connection that broke while idle fails one call (503) and the pool drops it.
            config["CONN_HEALTH_CHECKS"] = False
            config["OPTIONS"] = {
                "pool": {
                    "min_size": min(2, pool_size),
                    "max_size": pool_size,
                    "timeout": _float("DATABASE_POOL_TIMEOUT", 10.0, minimum=0.1),
                }
            }
    return config


def _networks(name: str, default: str) -> list[str]:
    """A comma-separated list of networks (``10.0.0.0/8``) or addresses; a bad entry stops the start."""
    raw = os.environ.get(name)
    entries = [part.strip() for part in (default if raw is None else raw).split(",") if part.strip()]
    for entry in entries:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {entry!r} is not a network or an address.") from None
    return entries


# Names Brook's own agent kinds take; an extra agent may not take one (tenants.models.Agent).
_BUILT_IN_AGENTS = {"demo", "llm", "external", "http"}


def _agents(name: str) -> dict[str, str]:
    """``name=dotted.path,other=sync:dotted.path``: extra in-process agents by name (docs/agents.md)."""
    raw = os.environ.get(name, "")
    agents: dict[str, str] = {}
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        agent, sep, path = (piece.strip() for piece in entry.partition("="))
        target = path.removeprefix("sync:")
        if not sep or not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", agent) or not re.fullmatch(r"[\w.]+[.:]\w+", target):
            raise ImproperlyConfigured(
                f"{name}: {entry!r} is not name=package.module.Agent or name=sync:package.module.function "
                "(names: a-z, 0-9, _ and -, starting with a letter, at most 32)."
            )
        if agent in _BUILT_IN_AGENTS or agent in agents:
            raise ImproperlyConfigured(f"{name}: the agent name {agent!r} is taken.")
        agents[agent] = path
    return agents


def _redis_url(raw: str | None) -> str | None:
    if raw is None or raw.strip() == "":
        return None
    parts = urlsplit(raw)
    if parts.scheme not in {"redis", "rediss"} or not parts.hostname:
        raise ImproperlyConfigured(f"REDIS_URL={raw!r} must look like redis://127.0.0.1:6379/0.")
    return raw


# --- Core -----------------------------------------------------------------------------------------------------------

DEBUG = _bool("DEBUG", False)

SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (DEBUG=1 uses a development key).")
    SECRET_KEY = "brook-development-only-secret-key-do-not-use-in-production"  # noqa: S105 - DEBUG only

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must list the host names Brook answers to when DEBUG is off.")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "tenants",
    "chat",
    "streaming",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.cors.TenantCorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Data -----------------------------------------------------------------------------------------------------------

DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
DATABASES = {"default": _database(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = _redis_url(os.environ.get("REDIS_URL"))

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {"BACKEND": "streaming.live.layers.ResilientRedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}},
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "brook"),
        },
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "brook"}}

# --- Auth, i18n, static ---------------------------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))

# A request body's upper bound: the longest message a tenant may allow (100,000 characters) fits with room to spare.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# --- API ------------------------------------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Brook API",
    "DESCRIPTION": "Sessions, messages and thought steps for Brook's chat widget.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "DeliveryEnum": "chat.models.Delivery.choices",
        "SessionDeliveryEnum": "tenants.rollout.SESSION_DELIVERIES",
    },
}

# --- Brook ----------------------------------------------------------------------------------------------------------

# How long a session token stays valid (seconds); the widget creates a new session after that.
BROOK_SESSION_TOKEN_TTL = _int("BROOK_SESSION_TOKEN_TTL", 7 * 24 * 3600, minimum=60)
# Reverse proxies in front of Brook that append to X-Forwarded-For (nginx: 1); 0 trusts only the socket's address.
# Per-IP limits use the address this many hops from the right of X-Forwarded-For.
BROOK_PROXY_HOPS = _int("BROOK_PROXY_HOPS", 0, maximum=5)
# Who may read /metrics (docs/metrics.md): clients in these networks (the address BROOK_PROXY_HOPS picks), or any
# client with "Authorization: Bearer <BROOK_METRICS_TOKEN>". Empty networks and no token: nobody.
BROOK_METRICS_ALLOWED_NETWORKS = _networks("BROOK_METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1")
BROOK_METRICS_TOKEN = os.environ.get("BROOK_METRICS_TOKEN", "")
# How long a stream token (the only token accepted in a URL: EventSource, WebSocket) stays valid (seconds).
BROOK_STREAM_TOKEN_TTL = _int("BROOK_STREAM_TOKEN_TTL", 300, minimum=10, maximum=3600)

# The demo agent's pacing: tokens per second (0 = no pauses) and the pause that stands for each step's work.
BROOK_DEMO_TOKENS_PER_SECOND = _float("BROOK_DEMO_TOKENS_PER_SECOND", 40.0)
BROOK_DEMO_STEP_SECONDS = _float("BROOK_DEMO_STEP_SECONDS", 0.4)

# The event log and live delivery (docs/delivery.md).
# Threads that run every runner's, stream's and long poll's database calls in one worker (core/db_bridge.py); 0 runs
# them on the caller's sync thread (tests that keep their data in the test's transaction).
BROOK_DB_THREADS = _int("BROOK_DB_THREADS", 8, maximum=256)
# Coalescing window for token deltas: the first delta of a burst is written at once, the rest every this many ms.
BROOK_DELTA_FLUSH_MS = _int("BROOK_DELTA_FLUSH_MS", 300, minimum=0, maximum=5000)
# A running reply's lease; a worker renews it every lease/2.5 s, and the sweeper ends replies whose lease lapsed.
BROOK_LEASE_SECONDS = _float("BROOK_LEASE_SECONDS", 20.0, minimum=1.0)
# Extra in-process agents a tenant may be given, by name (docs/agents.md, "In-process Python agents").
BROOK_AGENTS = _agents("BROOK_AGENTS")
# Threads for blocking (sync:) agents, per worker: at most this many of their replies run at once.
BROOK_SYNC_AGENT_THREADS = _int("BROOK_SYNC_AGENT_THREADS", 16, minimum=1, maximum=256)
# A reply a tenant's own agent claimed: each push or heartbeat renews it for this long (docs/agents.md).
BROOK_AGENT_LEASE_SECONDS = _float("BROOK_AGENT_LEASE_SECONDS", 30.0, minimum=1.0)
# How often each worker's sweeper looks for lapsed leases, stalled queues and expired logs (0 = no sweeper here).
BROOK_SWEEP_SECONDS = _float("BROOK_SWEEP_SECONDS", 5.0)
# SSE heartbeat comment, and how often a quiet stream re-reads the database in case a live event was lost.
BROOK_HEARTBEAT_SECONDS = _float("BROOK_HEARTBEAT_SECONDS", 15.0, minimum=1.0)
BROOK_STREAM_RECHECK_SECONDS = _float("BROOK_STREAM_RECHECK_SECONDS", 5.0, minimum=0.5)

# The LLM agent's process-wide default model (docs/providers.md); a tenant's own llm_* fields win.
BROOK_LLM_PROVIDER = os.environ.get("BROOK_LLM_PROVIDER", "openai")
if BROOK_LLM_PROVIDER not in {"openai", "anthropic", "bedrock"}:
    raise ImproperlyConfigured(f"BROOK_LLM_PROVIDER={BROOK_LLM_PROVIDER!r}; Brook knows: openai, anthropic, bedrock.")
BROOK_LLM_REGION = os.environ.get("BROOK_LLM_REGION", "us-east-1")
BROOK_LLM_BASE_URL = os.environ.get("BROOK_LLM_BASE_URL", "")
BROOK_LLM_MODEL = os.environ.get("BROOK_LLM_MODEL", "")
BROOK_LLM_API_KEY = os.environ.get("BROOK_LLM_API_KEY", "")
if not BROOK_LLM_API_KEY and os.environ.get("BROOK_LLM_API_KEY_FILE"):
    BROOK_LLM_API_KEY = Path(os.environ["BROOK_LLM_API_KEY_FILE"]).read_text().strip()
BROOK_LLM_CONNECT_TIMEOUT = _float("BROOK_LLM_CONNECT_TIMEOUT", 5.0, minimum=0.1)
BROOK_LLM_FIRST_TOKEN_TIMEOUT = _float("BROOK_LLM_FIRST_TOKEN_TIMEOUT", 30.0, minimum=0.1)
BROOK_LLM_IDLE_TIMEOUT = _float("BROOK_LLM_IDLE_TIMEOUT", 20.0, minimum=0.1)
# A tenant's own HTTP agent (docs/agents.md, "An HTTP agent"): seconds to connect, to its first event, between events.
BROOK_AGENT_CONNECT_TIMEOUT = _float("BROOK_AGENT_CONNECT_TIMEOUT", 5.0, minimum=0.1)
BROOK_AGENT_FIRST_EVENT_TIMEOUT = _float("BROOK_AGENT_FIRST_EVENT_TIMEOUT", 30.0, minimum=0.1)
BROOK_AGENT_IDLE_TIMEOUT = _float("BROOK_AGENT_IDLE_TIMEOUT", 60.0, minimum=0.1)

# Serve /static/ from the ASGI app (make run); production puts a web server in front instead.
BROOK_SERVE_STATIC = _bool("BROOK_SERVE_STATIC", DEBUG)

# Logs go to stdout: JSON lines (one object each, with the reply's message, session and tenant ids; core/logs.py)
# unless LOG_FORMAT=plain; plain is the default only with DEBUG on.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain" if DEBUG else "json")
if LOG_FORMAT not in {"json", "plain"}:
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r}; use json or plain.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "core.logs.JsonFormatter"},
    },
    "filters": {"context": {"()": "core.logs.ContextFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
    },
}

# --- Production hardening (docs/operations.md) ----------------------------------------------------------------------

# Served over https (at the proxy): secure cookies, HSTS. Off for loopback http and for `make run`.
BROOK_HTTPS = _bool("BROOK_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = BROOK_HTTPS
SECURE_HSTS_SECONDS = _int("BROOK_HSTS_SECONDS", 31_536_000 if BROOK_HTTPS else 0)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# Behind a proxy (BROOK_PROXY_HOPS > 0), its X-Forwarded-Proto says whether the visitor came over https; without
# one, nobody may claim it.
if BROOK_PROXY_HOPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The admin's origins when they differ from the Host header's (a proxy on another port or scheme).
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
