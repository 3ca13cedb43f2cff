"""Serializer pieces every API layer shares: a strict string input and the error body (docs/api.md, "Errors")."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class TextField(serializers.CharField):
    """A string input, and only a string: DRF's CharField would take ``123`` as ``"123"``. Null characters and lone
    surrogates are refused too (DRF's validators), so whatever is accepted stores as text in any database."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("not_a_string")
        return str(super().to_internal_value(data))


class ErrorSerializer(serializers.Serializer[Any]):
    """Brook's error body, ``{"code", "message"}`` (``core.errors``), for the OpenAPI description."""

    code = serializers.CharField()
    message = serializers.CharField()


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    """The OpenAPI ``responses`` entries of a route's error statuses, each Brook's error body."""
    return {status: OpenApiResponse(ErrorSerializer) for status in statuses}
