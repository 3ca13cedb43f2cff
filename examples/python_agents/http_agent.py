"""An HTTP agent for Brook's ``http`` agent kind, with the standard library and the Standard Webhooks library
(docs/agents.md, "An HTTP agent"): it checks Brook's signature, then streams its answer as NDJSON.

    SIGNING_SECRET=whsec_… PORT=8090 python -m examples.python_agents.http_agent
    manage.py tenants set <public key> agent=http agent_url=http://127.0.0.1:8090/brook
"""

from __future__ import annotations

import json
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def answer(question: str) -> list[dict[str, Any]]:
    """The agent's work, as Brook's events: a step, a tool call and its result, the answer word by word."""
    words = question.split()
    events: list[dict[str, Any]] = [
        {"type": "step.started", "data": {"index": 0, "kind": "thinking", "title": "Reading the question"}},
        {"type": "tool.call", "data": {"call_id": "len-1", "name": "word_count", "arguments": {"text": question}}},
        {"type": "tool.result", "data": {"call_id": "len-1", "result": {"words": len(words)}}},
        {"type": "step.completed", "data": {"index": 0}},
    ]
    events += [{"type": "text.delta", "data": {"delta": w + " "}} for w in f"You wrote {len(words)} words.".split()]
    events.append({"type": "message.completed"})
    return events


class BrookAgent(BaseHTTPRequestHandler):
    """POST /brook: verify, then stream the answer one event a line."""

    secret = os.environ.get("SIGNING_SECRET", "")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        try:
            request = Webhook(self.secret).verify(body, dict(self.headers.items()))
        except WebhookVerificationError:
            self.send_error(401, "Bad signature")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        for event in answer(request["message"]):
            self.wfile.write(json.dumps(event).encode() + b"\n")
            self.wfile.flush()
            time.sleep(0.01)  # an agent takes its time; the visitor sees each event as it comes

    def log_message(self, format: str, *args: Any) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8090"))), BrookAgent)
    print(f"Listening on http://127.0.0.1:{server.server_address[1]}/brook", flush=True)
    server.serve_forever()
