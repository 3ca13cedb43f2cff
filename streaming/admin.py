"""Django's admin autodiscovery imports ``<app>.admin``: this registers the admin pages that read several apps
(``streaming.ops.admin``: the tenant page with its fallbacks and rollout preview).

See docs/tenants.md, "Admin".
"""

from streaming.ops import admin  # noqa: F401
