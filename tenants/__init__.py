"""Tenants: their flags, limits, origins, rollout, staff memberships and change history (docs/tenants.md)."""
