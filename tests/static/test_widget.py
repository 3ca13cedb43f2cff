"""The chat widget in a real browser (Chromium), on the demo page of a live Brook server (docs/widget.md)."""

from __future__ import annotations

import re

import pytest

from chat.models import FallbackReport, Message, MessageStatus, ThoughtStep
from tests.conftest import ROOT
from tests.static.conftest import VIEWPORT, OpenWidget, Proxy, Widget

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser, pytest.mark.stack]

QUESTION = "How does streaming work in Brook, and what happens when the network drops?"  # a three-part answer
STATEMENT = "I like rivers and long walks by the water."  # a shorter one
SCREENSHOTS = ROOT / "docs" / "img"


def stored(widget: Widget) -> Message:
    """The reply on screen, as Brook stored it."""
    return Message.objects.get(id=widget.message_id())


def stored_steps(reply: Message) -> list[ThoughtStep]:
    return list(ThoughtStep.objects.filter(message=reply).order_by("index"))


def test_the_answer_streams_in_piece_by_piece_after_its_steps_and_ends_as_stored(widget: Widget) -> None:
    widget.record_answers()

    widget.send(QUESTION)
    widget.wait_until_finished()

    reply = stored(widget)
    final = widget.answer()
    streamed = [seen for seen in widget.answers() if seen["streaming"] and seen["text"]]
    assert len(streamed) >= 3
    assert all(final.startswith(seen["text"]) for seen in widget.answers())  # it only ever grew
    assert "Analyzing the prompt" in streamed[0]["steps"]
    assert reply.status == MessageStatus.COMPLETED
    assert final == reply.content
    stats = re.fullmatch(r"(\d+) tokens · \d+\.\d s · (\d+) tokens/s", widget.stats())
    assert stats is not None
    assert int(stats[1]) == reply.completion_tokens
    assert int(stats[2]) > 0


def test_a_normal_reply_logs_nothing_to_the_console_but_the_missing_favicon(widget: Widget) -> None:
    widget.send("Hello!")
    widget.wait_until_finished()

    assert [line for line in widget.warnings_and_errors() if "/favicon.ico" not in line] == []


@pytest.mark.parametrize("how", ["button", "escape"])
def test_stop_ends_the_reply_and_keeps_the_partial_answer_on_screen(widget: Widget, how: str) -> None:
    widget.send(QUESTION)
    widget.wait_for_text()

    if how == "button":
        widget.click(".stop")
    else:
        widget.press("Escape")  # the focus is still in the message box
    widget.wait_until_finished()

    reply = stored(widget)
    assert reply.status == MessageStatus.CANCELLED
    assert reply.content
    assert widget.answer() == reply.content
    assert "cancelled" in widget.reply_classes()  # marked "(stopped)"
    assert not widget.is_enabled(".stop")
    assert widget.is_enabled(".send")
    assert "Stopping" not in " ".join(widget.texts("p.status-line"))  # the status line does not hang on "Stopping…"


def test_with_event_source_blocked_the_reply_arrives_by_polling_and_the_fallback_is_reported(widget: Widget) -> None:
    widget.block(re.compile(r"/api/v1/messages/[^/]+/stream"))

    report_status = widget.send_and_wait_for_response(STATEMENT, "/fallback")
    widget.wait_until_finished()

    reply = stored(widget)
    assert reply.status == MessageStatus.COMPLETED
    assert widget.answer() == reply.content
    assert report_status == 201
    report = FallbackReport.objects.get()
    assert (report.from_delivery, report.to_delivery, report.message_id) == ("stream", "poll", reply.id)
    reported = widget.evaluate("window.BrookWidget.fallbacks")
    assert [(r["from_delivery"], r["to_delivery"]) for r in reported] == [("stream", "poll")]


def test_after_the_connection_drops_mid_reply_the_text_resumes_with_nothing_repeated_or_missing(
    open_widget: OpenWidget, proxy: Proxy
) -> None:
    widget = open_widget(proxy.base_url)  # the page, and so the widget, talk to Brook through the proxy
    widget.record_answers()
    widget.send(QUESTION)
    widget.wait_for_text()

    proxy.cut()
    before = widget.answer()
    widget.wait_until_finished()

    reply = stored(widget)
    final = widget.answer()
    assert reply.status == MessageStatus.COMPLETED
    assert final == reply.content
    assert len(final) - len(before) > len(before)  # more of it arrived after the cut than before
    assert all(final.startswith(seen["text"]) for seen in widget.answers())
    # Not one jump to the end: what was missed, then the rest live (a straggler from before the cut may be one).
    assert len([seen for seen in widget.answers() if seen["streaming"] and len(seen["text"]) > len(before)]) >= 3
    assert not [line for line in widget.warnings_and_errors() if "streamed text differs" in line]
    assert widget.evaluate("window.BrookWidget.fallbacks") == []  # the stream itself resumed


def test_after_a_reload_the_conversation_and_its_steps_are_back(widget: Widget) -> None:
    widget.send(STATEMENT)
    widget.wait_until_finished()

    widget.reload()

    reply = stored(widget)
    assert widget.texts(".message.user") == [STATEMENT]
    assert widget.answer() == reply.content
    assert widget.step_titles() == [step.title for step in stored_steps(reply)]
    assert len(widget.step_titles()) >= 4


def test_html_in_the_visitors_message_shows_as_text_and_never_runs(widget: Widget) -> None:
    payload = '<img src=x onerror="window.__xss=1"> <script>window.__xss=2</script> ends here.'

    widget.send(payload)
    widget.wait_until_finished()

    assert widget.texts(".message.user") == [payload]
    assert payload in widget.answer()  # the demo agent quotes the visitor's words
    assert widget.answer() == stored(widget).content
    assert widget.evaluate("typeof window.__xss") == "undefined"
    assert widget.count("img") == widget.count("script") == 0


def test_export_downloads_the_replys_steps_as_json(widget: Widget) -> None:
    widget.send(STATEMENT)
    widget.wait_until_finished()

    exported = widget.export()

    reply = stored(widget)
    assert exported["message_id"] == str(reply.id)
    assert exported["content"] == reply.content
    assert [(s["kind"], s["title"], s["status"]) for s in exported["steps"]] == [
        (s.kind, s.title, s.status) for s in stored_steps(reply)
    ]
    assert {s["status"] for s in exported["steps"]} == {"completed"}


def test_screenshots_show_the_widget_on_the_demo_page_streaming_and_finished(widget: Widget) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)

    widget.send(QUESTION)
    widget.wait_for_text()
    widget.screenshot(SCREENSHOTS / "widget-streaming.png")
    streaming = widget.count(".message.assistant.streaming")
    widget.wait_until_finished()
    widget.screenshot(SCREENSHOTS / "widget-finished.png")

    assert streaming == 1
    box = widget.panel_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"]
    assert box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORT["height"]
    for name in ("widget-streaming.png", "widget-finished.png"):
        assert (SCREENSHOTS / name).read_bytes().startswith(b"\x89PNG")
