"""The runner: drives a tenant's agent for one queued reply and records how it ends (docs/architecture.md).

A reply is claimed with a conditional update (queued → running), so it runs at most once whoever calls this. The
tenant's ``max_stream_seconds`` bounds the run (``STREAM_004``); an agent's exception fails the reply with
``AGENT_ERROR``, keeping whatever content it had produced. The exception's text goes to the log, not to the visitor.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from asgiref.sync import sync_to_async

from chat import services
from chat.models import Message, MessageStatus
from chat.selectors import conversation_before
from config.errors import ErrorCode
from streaming.agents import Turn, agent_for
from streaming.recorder import MessageRecorder

logger = logging.getLogger(__name__)


def _load(reply_id: uuid.UUID) -> tuple[Message, list[Turn]]:
    reply = Message.objects.select_related("session__tenant").get(id=reply_id)
    turns = [Turn(role=m.role, content=m.content) for m in conversation_before(reply=reply)]
    return reply, turns


async def run_reply(*, reply_id: uuid.UUID) -> None:
    """Run the agent for a queued reply to its end; does nothing if the reply is not queued."""
    if not await sync_to_async(services.reply_start)(reply_id=reply_id):
        return
    reply, turns = await sync_to_async(_load)(reply_id)
    tenant = reply.session.tenant
    recorder = MessageRecorder(reply_id=reply_id)
    deadline = asyncio.timeout(tenant.max_stream_seconds)
    try:
        async with deadline:
            await agent_for(tenant).run(turns, recorder)
    except TimeoutError:
        if not deadline.expired():
            logger.exception("Agent raised TimeoutError for reply %s", reply_id)
            await recorder.finish(
                MessageStatus.FAILED,
                error_code=ErrorCode.AGENT_ERROR,
                error_message="The assistant could not finish this reply.",
            )
            return
        await recorder.finish(
            MessageStatus.FAILED,
            error_code=ErrorCode.STREAM_TIMEOUT,
            error_message=f"The reply took longer than {tenant.max_stream_seconds} s and was stopped.",
        )
    except Exception:
        logger.exception("Agent failed for reply %s (tenant %s)", reply_id, tenant.pk)
        await recorder.finish(
            MessageStatus.FAILED,
            error_code=ErrorCode.AGENT_ERROR,
            error_message="The assistant could not finish this reply.",
        )
    else:
        await recorder.finish(MessageStatus.COMPLETED)
