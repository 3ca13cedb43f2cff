"""The agent API: a tenant's own agent claims queued replies and pushes their events (docs/agents.md).

Routes under ``/api/v1/agent/``, for the tenant's servers only: a server key (``tenants.access``) opens them, and
only for replies of its own tenant that it claimed; any other reply id is a 404. What is pushed is stored by
``chat.services.reply_ingest`` exactly as Brook's own runs store their events, then published, so every transport,
resume, Stop, visibility and the sweeper work for it unchanged.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from chat import selectors, services
from chat.access import parse_uuid
from chat.pushed import parse_push
from core.db_bridge import db, wait_released
from core.errors import ErrorCode
from core.serializers import error_responses
from streaming.live import fanout
from tenants.access import ServerKeyAPIView
from tenants.models import ServerKey

MAX_CLAIM_WAIT_SECONDS = 25.0
# A waiting claim checks the database this often even without a nudge (a nudge can be lost, or meant for a reply
# another agent took first).
CLAIM_RECHECK_SECONDS = 1.0

_ERRORS = error_responses(400, 401, 403, 404, 409, 413)


def _lease_seconds() -> float:
    return float(settings.BROOK_AGENT_LEASE_SECONDS)


def held_body(held: services.Held) -> dict[str, Any]:
    """Where a held reply stands, as every agent route answers it."""
    return {
        "reply_id": str(held.reply_id),
        "status": held.status,
        "accepted_seq": held.agent_seq,
        "next_seq": held.agent_seq + 1,
        "stop_requested": held.stop_requested,
        "lease_expires_at": held.lease_expires_at.isoformat() if held.lease_expires_at else None,
    }


async def claim_waiting(agent_key: ServerKey, wait: float) -> tuple[Any, Any] | None:
    """Claim the tenant's next queued reply, waiting up to ``wait`` seconds for one."""
    claim = db(services.reply_claim_next)
    claimed = await claim(agent_key=agent_key, lease_seconds=_lease_seconds())
    if claimed is not None or wait <= 0:
        return claimed
    channel_layer = fanout.layer()
    channel = await channel_layer.new_channel()
    group = fanout.agent_group(agent_key.tenant_id)
    await channel_layer.group_add(group, channel)
    try:
        deadline = asyncio.get_running_loop().time() + wait
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                async with asyncio.timeout(min(left, CLAIM_RECHECK_SECONDS)):
                    await channel_layer.receive(channel)
            except TimeoutError:
                pass
            claimed = await claim(agent_key=agent_key, lease_seconds=_lease_seconds())
            if claimed is not None:
                return claimed
        return None
    finally:
        await asyncio.shield(channel_layer.group_discard(group, channel))


class ClaimApi(ServerKeyAPIView):
    """Claim the tenant's next queued reply under a lease; ``wait`` long-polls for one (204 if none came)."""

    class ClaimInputSerializer(serializers.Serializer[Any]):
        wait = serializers.FloatField(min_value=0, max_value=MAX_CLAIM_WAIT_SECONDS, default=0)

    @extend_schema(request=ClaimInputSerializer, responses={200: dict, 204: None, **_ERRORS})
    def post(self, request: Request) -> Response:
        data = self.ClaimInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        claimed = wait_released(claim_waiting)(self.server_key, data.validated_data["wait"])
        if claimed is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        reply, status_event = claimed
        wait_released(fanout.publish)([status_event], session_id=reply.session_id)
        conversation = selectors.conversation_before(reply=reply)
        body = {
            **held_body(services.held(reply)),
            "session_id": str(reply.session_id),
            "reply_to": str(reply.reply_to_id),
            "lease_seconds": _lease_seconds(),
            "conversation": [{"role": m.role, "content": m.content} for m in conversation],
        }
        return Response(body)


class ReplyEventsApi(ServerKeyAPIView):
    """Push events into a reply this key holds: ``{"events": [{"seq", "type", "data"}, ...]}``."""

    @extend_schema(request=dict, responses={200: dict, **_ERRORS})
    def post(self, request: Request, reply_id: str) -> Response:
        reply = parse_uuid(reply_id, not_found=ErrorCode.MESSAGE_NOT_FOUND)
        events = parse_push(request.data)
        held = services.reply_ingest(
            reply_id=reply, agent_key=self.server_key, events=events, lease_seconds=_lease_seconds()
        )
        if held.events:
            wait_released(fanout.publish)(held.events, session_id=held.session_id)
        return Response(held_body(held))


class ReplyHeartbeatApi(ServerKeyAPIView):
    """Renew the lease of a reply this key holds; says whether Stop was asked."""

    @extend_schema(request=None, responses={200: dict, **_ERRORS})
    def post(self, request: Request, reply_id: str) -> Response:
        reply: uuid.UUID = parse_uuid(reply_id, not_found=ErrorCode.MESSAGE_NOT_FOUND)
        held = services.reply_heartbeat(reply_id=reply, agent_key=self.server_key, lease_seconds=_lease_seconds())
        return Response(held_body(held))
