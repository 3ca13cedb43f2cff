"""Operating Brook: Prometheus metrics, the admin dashboard and the tenant page, health and readiness, the demo page
(docs/metrics.md, docs/operations.md)."""
