"""Everything that runs and delivers a reply, in layers that only point down (docs/architecture.md, "The stack"):
``agents`` (what answers), ``live`` (fan-out and the exactly-once reader), ``run`` (running a reply), ``transports``
(HTTP and WebSocket delivery) and ``ops`` (metrics, dashboard, health, admin pages that read several apps)."""
