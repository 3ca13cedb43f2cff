"""Tenants: Brook's SaaS customers, their widget key, feature flags and limits (docs/tenants.md)."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from tenants.keys import new_signing_secret


def new_public_key() -> str:
    """An unguessable widget key (the seeds' ``tenant_hash``): 128 random bits, URL-safe.

    Never starting with ``-``, which command lines would read as an option (``tenants set KEY ...``).
    """
    while True:
        key = secrets.token_urlsafe(16)
        if not key.startswith("-"):
            return key


def normalize_origin(value: str) -> str:
    """``https://Example.com:443/`` → ``https://example.com``; raises ValidationError for anything but an origin."""
    candidate = value.strip()
    parts = urlsplit(candidate)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationError(f"{value!r} is not an origin like https://example.com.", code="invalid_origin")
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username or parts.password:
        raise ValidationError(f"{value!r} must be an origin only: scheme, host and port.", code="invalid_origin")
    try:
        port = parts.port
    except ValueError:
        raise ValidationError(f"{value!r} has an invalid port.", code="invalid_origin") from None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    default_port = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + ("" if port in (None, default_port) else f":{port}")


def validate_origins(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError("Allowed origins must be a list of strings.", code="invalid_origins")
    for item in value:
        normalize_origin(item)


class Agent(models.TextChoices):
    """Who answers a tenant's visitors: one of Brook's agents, or the tenant's own (docs/agents.md)."""

    DEMO = "demo", "Demo agent (no network)"
    LLM = "llm", "LLM (a model provider)"
    EXTERNAL = "external", "The tenant's own orchestrator (claims replies and pushes their events)"
    HTTP = "http", "The tenant's own HTTP agent (Brook posts the conversation and reads its events)"


def agent_choices() -> list[tuple[str, str]]:
    """Every agent a tenant may be given: Brook's kinds, then the in-process agents ``BROOK_AGENTS`` names."""
    extra = [(name, f"{name} (in-process: {path})") for name, path in settings.BROOK_AGENTS.items()]
    return [*Agent.choices, *extra]


def validate_agent(value: str) -> None:
    names = [name for name, _label in agent_choices()]
    if value not in names:
        raise ValidationError(f"{value!r} is not an agent here; choose one of: {', '.join(names)}.", code="agent")


class LlmProvider(models.TextChoices):
    """Model APIs the LLM agent can call; blank means the process-wide default (BROOK_LLM_PROVIDER)."""

    DEFAULT = "", "Process default"
    OPENAI = "openai", "OpenAI-compatible (OpenAI, Groq, DeepSeek, vLLM, Ollama, OpenRouter)"
    ANTHROPIC = "anthropic", "Anthropic Messages"
    BEDROCK = "bedrock", "Amazon Bedrock (Converse)"


secret_name_validator = RegexValidator(
    r"^[A-Za-z][A-Za-z0-9_]{0,63}$", "A secret name: letters, digits and underscores, starting with a letter."
)


class DoubleTexting(models.TextChoices):
    """What happens to a new message while the session's previous reply is still running."""

    REJECT = "reject", "Reject the new message (409)"
    ENQUEUE = "enqueue", "Queue it behind the running reply"
    INTERRUPT = "interrupt", "Cancel the running reply, then answer"


class FallbackDelivery(models.TextChoices):
    """What a visitor outside the streaming rollout gets (docs/tenants.md, "Rollout")."""

    POLL = "poll", "Polling (steps still appear live)"
    BATCH = "batch", "Batch (one JSON answer)"


class ThoughtVisibility(models.TextChoices):
    """How much of the assistant's work the widget may see; enforced before anything is stored or sent."""

    FULL = "full", "Everything: steps, tool calls and the model's raw reasoning"
    STEPS = "steps", "Steps and tool calls, no raw reasoning"
    HIDDEN = "hidden", "Only the answer"


class Tenant(models.Model):
    """A SaaS customer: its widget key, allowed origins, streaming flags, agent and limits."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    public_key = models.CharField(
        max_length=64,
        unique=True,
        default=new_public_key,
        help_text="The widget's data-tenant value (the seeds' tenant_hash). Public, unguessable.",
    )
    is_active = models.BooleanField(default=True, help_text="Inactive tenants' widgets get 404 everywhere.")
    allowed_origins = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_origins],
        help_text='Origins allowed to embed the widget, e.g. ["https://shop.example.com"].',
    )
    streaming_enabled = models.BooleanField(default=False)
    streaming_percentage = models.PositiveSmallIntegerField(
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="Share of visitors (0-100) who get streaming while it is enabled.",
    )
    fallback_delivery = models.CharField(
        max_length=8,
        choices=FallbackDelivery.choices,
        default=FallbackDelivery.POLL,
        help_text="What visitors outside the streaming rollout (or all, with streaming off) get.",
    )
    thought_visibility = models.CharField(
        max_length=8,
        choices=ThoughtVisibility.choices,
        default=ThoughtVisibility.FULL,
        help_text="What the widget may see of the assistant's work; hidden parts are never stored or sent.",
    )
    agent = models.CharField(
        max_length=32,
        default=Agent.DEMO,
        validators=[validate_agent],
        help_text="Who answers: demo, llm, external (the tenant's own orchestrator), http (the tenant's own HTTP "
        "agent) or an in-process agent named in BROOK_AGENTS (docs/agents.md).",
    )
    agent_url = models.URLField(
        max_length=500, blank=True, help_text="For the http agent: where Brook posts the conversation (docs/agents.md)."
    )
    agent_signing_secret = models.CharField(
        max_length=64,
        default=new_signing_secret,
        editable=False,
        help_text="Brook signs its calls to the tenant's agent with this (Standard Webhooks); the agent verifies them.",
    )
    messages_per_minute = models.PositiveIntegerField(
        default=10, validators=[MinValueValidator(1)], help_text="Messages per minute per session."
    )
    tenant_messages_per_minute = models.PositiveIntegerField(
        default=600,
        validators=[MinValueValidator(1), MaxValueValidator(1_000_000)],
        help_text="Messages per minute across all of this tenant's sessions.",
    )
    sessions_per_ip_per_minute = models.PositiveIntegerField(
        default=10,
        validators=[MinValueValidator(1), MaxValueValidator(10_000)],
        help_text="New sessions per minute from one IP address.",
    )
    max_streams_per_session = models.PositiveIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Open streams (SSE, WebSocket) at once per session.",
    )
    max_concurrent_streams = models.PositiveIntegerField(
        default=100,
        validators=[MinValueValidator(1), MaxValueValidator(10_000)],
        help_text="Open streams (SSE, WebSocket) at once across the tenant.",
    )
    max_stream_seconds = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(3600)], help_text="A reply's time limit."
    )
    max_message_length = models.PositiveIntegerField(
        default=8000,
        validators=[MinValueValidator(1), MaxValueValidator(100_000)],
        help_text="Longest visitor message, in characters.",
    )
    double_texting = models.CharField(
        max_length=16,
        choices=DoubleTexting.choices,
        default=DoubleTexting.REJECT,
        help_text="What a new message does while a reply in the same session is still running.",
    )
    cancel_on_disconnect = models.BooleanField(
        default=False, help_text="Cancel a streamed reply when its last viewer disconnects."
    )
    log_retention_days = models.PositiveIntegerField(
        default=7,
        validators=[MinValueValidator(1), MaxValueValidator(3650)],
        help_text="How long a finished reply's event log stays resumable; the message and its steps stay.",
    )
    retention_days = models.PositiveIntegerField(
        default=90,
        validators=[MaxValueValidator(36500)],
        help_text="Sessions idle longer than this are purged with their messages (brook_purge); 0 keeps them.",
    )
    llm_provider = models.CharField(max_length=16, choices=LlmProvider.choices, blank=True, default="")
    llm_model = models.CharField(max_length=200, blank=True, help_text="Blank: BROOK_LLM_MODEL.")
    llm_base_url = models.URLField(blank=True, help_text="Blank: BROOK_LLM_BASE_URL, or the provider's own.")
    llm_system_prompt = models.TextField(blank=True)
    llm_temperature = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(2)], help_text="Blank: the model's."
    )
    llm_max_tokens = models.PositiveIntegerField(
        default=1024, validators=[MinValueValidator(1), MaxValueValidator(200_000)]
    )
    llm_api_key_secret = models.CharField(
        max_length=64,
        blank=True,
        validators=[secret_name_validator],
        help_text="The NAME of the secret holding the API key (environment BROOK_SECRET_<NAME>), never the key.",
    )
    llm_thinking_budget = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(100_000)],
        help_text="Anthropic extended thinking: token budget (0 = off; at least 1,024 and below max tokens when on).",
    )
    llm_tools_enabled = models.BooleanField(default=True, help_text="Offer the built-in tools to the model.")
    llm_reasoning_starts_open = models.BooleanField(
        default=False, help_text="The model's template opens <think> in the prompt (Qwen3): output starts in reasoning."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(streaming_percentage__lte=100), name="tenant_streaming_percentage_0_100"
            ),
            models.CheckConstraint(
                condition=models.Q(messages_per_minute__gte=1), name="tenant_messages_per_minute_min"
            ),
            models.CheckConstraint(condition=models.Q(max_stream_seconds__gte=1), name="tenant_max_stream_seconds_min"),
            models.CheckConstraint(condition=models.Q(max_message_length__gte=1), name="tenant_max_message_length_min"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        if self.llm_thinking_budget and not 1024 <= self.llm_thinking_budget < self.llm_max_tokens:
            raise ValidationError(
                {"llm_thinking_budget": "A thinking budget is at least 1,024 tokens and less than the max tokens."}
            )
        if self.agent == Agent.HTTP and not self.agent_url:
            raise ValidationError({"agent_url": "The http agent needs the URL Brook posts the conversation to."})
        if isinstance(self.allowed_origins, list):
            try:
                self.allowed_origins = sorted({normalize_origin(origin) for origin in self.allowed_origins})
            except ValidationError as error:
                raise ValidationError({"allowed_origins": error}) from None


class TenantMembership(models.Model):
    """A staff user who works for one tenant: in the admin they see and edit only that tenant's objects."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tenant_membership")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} @ {self.tenant}"


class ChangeSource(models.TextChoices):
    ADMIN = "admin", "Admin"
    COMMAND = "command", "Command line"
    SYSTEM = "system", "Brook"


class TenantChange(models.Model):
    """One change to a tenant's settings: who, from where, and each field's old and new value."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="changes")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    source = models.CharField(max_length=16, choices=ChangeSource.choices)
    changes = models.JSONField(help_text='{"field": [old, new], ...}')
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="tenant_change_recent")]

    def __str__(self) -> str:
        return f"{self.tenant} {self.created_at:%Y-%m-%d %H:%M}: {', '.join(self.changes)}"


class ServerKey(models.Model):
    """A key a tenant's own servers send as ``Authorization: Bearer`` (the agent API; docs/agents.md).

    The key is shown once, when it is made; Brook keeps its visible ``prefix`` (``bsk_`` and 8 characters, to tell
    keys apart) and a SHA-256 hash of the whole key (``tenants.keys``). A revoked key opens nothing from that moment.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="server_keys")
    name = models.CharField(max_length=100, help_text="What the key is for, e.g. 'production orchestrator'.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="server_key_tenant_recent")]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
