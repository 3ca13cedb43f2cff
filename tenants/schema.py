"""How the server key appears in the OpenAPI description (/api/schema/, /api/docs/; docs/agents.md)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ServerKeyScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    target_class = "tenants.access.ServerKeyAuthentication"
    name = "serverKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A tenant's server key (bsk_…), for its own servers only: never from a browser.",
        }
