"""A send in stream mode reads the session and its tenant once before the reply starts (issue 14).

Every SQL statement the request runs is recorded, on whichever database thread runs it (``core.db_bridge``), from the
POST until the first SSE event: the request's own context is marked, and the runner, which starts with a fresh
context (``streaming.run.runner.start_detached``), is left out.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from typing import Any

import pytest
from django.db.backends.utils import CursorWrapper
from django.test import AsyncClient

from tests.conftest import SessionInfo
from tests.streaming.conftest import read_body

pytestmark = [pytest.mark.django_db(transaction=True)]

_in_request: contextvars.ContextVar[bool] = contextvars.ContextVar("in_request", default=False)

# The view reads session + tenant (one join); message_submit locks the session, checks double texting, stores the
# question, the reply and message.started and touches the session; the stream reads where the log ends, then its
# first page.
STATEMENTS_BEFORE_FIRST_EVENT = 9
# Transaction control differs by database (SQLite's BEGIN IMMEDIATE, savepoints around bulk inserts): not counted.
TRANSACTION_CONTROL = ("BEGIN", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """SQL run in a context where ``_in_request`` is set, from any thread."""
    seen: list[str] = []
    execute = CursorWrapper.execute

    def recording(self: CursorWrapper, sql: str, params: Any = None) -> Any:
        if _in_request.get():
            seen.append(sql)
        return execute(self, sql, params)

    monkeypatch.setattr(CursorWrapper, "execute", recording)
    yield seen


async def test_a_stream_send_reads_the_session_and_tenant_once(session: SessionInfo, statements: list[str]) -> None:
    client = AsyncClient()
    _in_request.set(True)

    response: Any = await client.post(
        session.messages_url,
        {"content": "How do I reset my password?", "mode": "stream"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {session.token}"},
    )
    body = b""
    chunks = aiter(response.streaming_content)
    while b"event: message.started" not in body:
        body += bytes(await anext(chunks))
    _in_request.set(False)
    body += await read_body(response)  # to the end: the stream closes as a client would see it close

    assert response.status_code == 200
    work = [sql for sql in statements if not sql.startswith(TRANSACTION_CONTROL)]
    tenant_reads = [sql for sql in work if '"tenants_tenant"' in sql]
    assert len(tenant_reads) == 1, tenant_reads
    assert '"chat_chatsession"' in tenant_reads[0]  # the session and its tenant, in one join
    assert len(work) == STATEMENTS_BEFORE_FIRST_EVENT, "\n".join(work)
