"""How a reply reaches a client: batch, polling, Server-Sent Events, EventSource start and WebSocket
(docs/delivery.md, docs/api.md)."""
