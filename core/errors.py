"""Brook's API error contract: every error is a 4xx/5xx JSON body ``{"code", "message"}`` (docs/api.md).

Codes are stable strings that clients may switch on; messages are for people. Views raise ``ApiError`` (or DRF's own
exceptions, translated here) and never build error bodies by hand.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


class ErrorCode(StrEnum):
    """Every error code Brook answers with; docs/api.md describes each."""

    # From the streaming plan (seed 004).
    STREAM_CONNECTION_FAILED = "STREAM_001"
    STREAM_NOT_AUTHORIZED = "STREAM_002"
    STREAM_INVALID_PARAMETERS = "STREAM_003"
    STREAM_TIMEOUT = "STREAM_004"
    STREAM_FALLBACK = "STREAM_005"
    # Brook's own.
    INVALID_JSON = "INVALID_JSON"
    INVALID_INPUT = "INVALID_INPUT"
    MESSAGE_TOO_LONG = "MESSAGE_TOO_LONG"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    MESSAGE_IN_PROGRESS = "MESSAGE_IN_PROGRESS"
    LOG_EXPIRED = "LOG_EXPIRED"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    AUTH_REQUIRED = "AUTH_REQUIRED"
    AUTH_INVALID = "AUTH_INVALID"
    AUTH_EXPIRED = "AUTH_EXPIRED"
    TENANT_NOT_FOUND = "TENANT_NOT_FOUND"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    MESSAGE_NOT_FOUND = "MESSAGE_NOT_FOUND"
    NOT_FOUND = "NOT_FOUND"
    FORBIDDEN = "FORBIDDEN"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    RATE_LIMITED = "RATE_LIMITED"
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
    ORIGIN_NOT_ALLOWED = "ORIGIN_NOT_ALLOWED"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    AGENT_ERROR = "AGENT_ERROR"
    RUN_INTERRUPTED = "RUN_INTERRUPTED"
    TOOL_LOOP_LIMIT = "TOOL_LOOP_LIMIT"
    # The agent API, for tenants' own agents (docs/agents.md).
    AGENT_EVENT_INVALID = "AGENT_EVENT_INVALID"
    AGENT_SEQUENCE_GAP = "AGENT_SEQUENCE_GAP"
    AGENT_STEP_UNKNOWN = "AGENT_STEP_UNKNOWN"
    AGENT_REPLY_ENDED = "AGENT_REPLY_ENDED"
    AGENT_UNREACHABLE = "AGENT_UNREACHABLE"
    AGENT_TIMEOUT = "AGENT_TIMEOUT"
    AGENT_BAD_RESPONSE = "AGENT_BAD_RESPONSE"
    AGENT_UNAVAILABLE = "AGENT_UNAVAILABLE"
    # Model providers (docs/providers.md).
    PROVIDER_NOT_CONFIGURED = "PROVIDER_NOT_CONFIGURED"
    PROVIDER_AUTH = "PROVIDER_AUTH"
    PROVIDER_NOT_FOUND = "PROVIDER_NOT_FOUND"
    PROVIDER_BAD_REQUEST = "PROVIDER_BAD_REQUEST"
    PROVIDER_RATE_LIMITED = "PROVIDER_RATE_LIMITED"
    PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
    PROVIDER_TIMEOUT = "PROVIDER_TIMEOUT"
    PROVIDER_UNREACHABLE = "PROVIDER_UNREACHABLE"
    PROVIDER_BAD_RESPONSE = "PROVIDER_BAD_RESPONSE"
    UNHEALTHY = "UNHEALTHY"
    DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class ApiError(exceptions.APIException):
    """An error with a stable code, raised by views and services and rendered as ``{"code", "message"}``."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        status_code: int = 400,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail=message, code=code.value)
        self.status_code = status_code
        self.error_code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        """The HTTP headers this error adds: ``Retry-After`` for limits, ``WWW-Authenticate`` for a 401."""
        headers = {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        if self.status_code == status.HTTP_401_UNAUTHORIZED:
            headers["WWW-Authenticate"] = 'Bearer realm="brook"'
        return headers

    def response(self) -> JsonResponse:
        """This error as a plain Django response, for views outside DRF."""
        response = JsonResponse(error_body(self.error_code, self.message, self.details), status=self.status_code)
        for name, value in self.headers().items():
            response[name] = value
        return response


def error_body(code: ErrorCode, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code.value, "message": message}
    if details:
        body["details"] = details
    return body


def _first_message(detail: Any) -> str:
    """The first human-readable message in a DRF validation detail (dict, list or string)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            inner = _first_message(value)
            return inner if key == "non_field_errors" else f"{key}: {inner}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


_DRF_CODES: list[tuple[type[exceptions.APIException], ErrorCode]] = [
    (exceptions.ParseError, ErrorCode.INVALID_JSON),
    (exceptions.UnsupportedMediaType, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
    (exceptions.NotAuthenticated, ErrorCode.AUTH_REQUIRED),
    (exceptions.AuthenticationFailed, ErrorCode.AUTH_INVALID),
    (exceptions.NotFound, ErrorCode.NOT_FOUND),
    (exceptions.PermissionDenied, ErrorCode.FORBIDDEN),
    (exceptions.MethodNotAllowed, ErrorCode.METHOD_NOT_ALLOWED),
    (exceptions.Throttled, ErrorCode.RATE_LIMITED),
    (exceptions.ValidationError, ErrorCode.INVALID_INPUT),
]


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler, rewritten into Brook's ``{"code", "message"}`` body."""
    if isinstance(exc, OperationalError | InterfaceError):
        logger.error("Database unavailable: %s", exc)
        exc = ApiError(
            ErrorCode.DATABASE_UNAVAILABLE,
            "Brook cannot reach its database right now. Try again shortly.",
            status_code=503,
            retry_after=5,
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        # Not an API exception: let Django log it and answer 500 through handler500.
        return None
    if isinstance(exc, ApiError):
        response.data = error_body(exc.error_code, exc.message, exc.details)
        for name, value in exc.headers().items():
            response[name] = value
    else:
        _rewrite(exc, response)
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Bearer realm="brook"'
    return response


def _rewrite(exc: exceptions.APIException, response: Response) -> None:
    code = next((c for kind, c in _DRF_CODES if isinstance(exc, kind)), ErrorCode.INVALID_INPUT)
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body(code, _first_message(exc.detail), {"fields": exc.detail})
    elif isinstance(exc, exceptions.ParseError):
        response.data = error_body(code, "The request body is not valid JSON.")
    else:
        response.data = error_body(code, str(exc.detail))
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        response.status_code = status.HTTP_401_UNAUTHORIZED


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404: unknown API URLs answer in the API's JSON format; pages keep Django's HTML."""
    if _is_api(request):
        return JsonResponse(error_body(ErrorCode.NOT_FOUND, "Nothing is here."), status=404)
    return defaults.page_not_found(request, exception or Http404())


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler400: what Django refuses before a view runs (a body over DATA_UPLOAD_MAX_MEMORY_SIZE, a bad Host)."""
    if _is_api(request):
        if isinstance(exception, RequestDataTooBig):
            body = error_body(ErrorCode.PAYLOAD_TOO_LARGE, "The request body is too large (at most 1 MiB).")
            return JsonResponse(body, status=413)
        return JsonResponse(error_body(ErrorCode.INVALID_INPUT, "The request is malformed."), status=400)
    return defaults.bad_request(request, exception or Exception())


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: the last resort; the traceback goes to the log, never to the client."""
    if _is_api(request):
        return JsonResponse(error_body(ErrorCode.INTERNAL_ERROR, "Brook hit an unexpected error."), status=500)
    return defaults.server_error(request)
