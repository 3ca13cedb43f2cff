"""Message services: idempotency under races, ordering, and what the agent is shown."""

from __future__ import annotations

import threading
from unittest import mock

import pytest
from django.db import connection

from chat import services
from chat.models import ChatSession, Message, MessageStatus, Role
from chat.selectors import conversation_before, session_messages
from tenants.models import Tenant


@pytest.mark.django_db
def test_a_reply_is_ordered_right_after_its_question(tenant: Tenant) -> None:
    session = ChatSession.objects.create(tenant=tenant)

    Tenant.objects.filter(pk=tenant.pk).update(double_texting="enqueue")
    session.refresh_from_db()
    reply = services.message_submit(session=session, content="one").reply
    second = services.message_submit(session=session, content="two").reply

    history = session_messages(session=session)
    assert [(m.role, m.content) for m in history] == [
        (Role.USER, "one"),
        (Role.ASSISTANT, ""),
        (Role.USER, "two"),
        (Role.ASSISTANT, ""),
    ]
    assert history[1].id == reply.id and history[3].id == second.id
    assert reply.status == MessageStatus.QUEUED


@pytest.mark.django_db
def test_the_agent_sees_only_completed_replies(tenant: Tenant) -> None:
    session = ChatSession.objects.create(tenant=tenant)
    failed = services.message_submit(session=session, content="first").reply
    Message.objects.filter(id=failed.id).update(status=MessageStatus.FAILED, content="half an ans")
    reply = services.message_submit(session=session, content="second").reply

    turns = conversation_before(reply=reply)

    assert [(m.role, m.content) for m in turns] == [(Role.USER, "first"), (Role.USER, "second")]


@pytest.mark.django_db
def test_a_lost_race_on_the_idempotency_key_answers_with_the_winners_reply(tenant: Tenant) -> None:
    session = ChatSession.objects.create(tenant=tenant)
    winner = services.message_submit(session=session, content="hi", client_message_id="k").reply
    Message.objects.filter(id=winner.id).update(status=MessageStatus.COMPLETED)

    # The loser checked before the winner's row existed, then hits the unique constraint.
    with mock.patch("chat.services.reply_for_client_message", side_effect=[None, (winner.reply_to, winner)]):
        submitted = services.message_submit(session=session, content="hi", client_message_id="k")

    assert (submitted.reply.id, submitted.created) == (winner.id, False)
    assert Message.objects.filter(session=session).count() == 2


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_store_one_message_and_one_reply(tenant: Tenant) -> None:
    session = ChatSession.objects.create(tenant=tenant)
    barrier = threading.Barrier(4)
    results: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            barrier.wait(timeout=10)
            submitted = services.message_submit(session=session, content="hi", client_message_id="same")
            results.append((str(submitted.reply.id), submitted.created))
        except BaseException as error:  # surfaced below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len({reply_id for reply_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, False, False, True]
    assert Message.objects.filter(session=session).count() == 2
