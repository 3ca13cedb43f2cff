"""The demo agent: deterministic, answers from the user's text, shows every kind of step, paced like a model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from asgiref.sync import async_to_sync
from hypothesis import given
from hypothesis import strategies as st
from pytest_django import Settings

from chat.models import StepStatus
from streaming.agents.base import Emitter, Turn, Usage
from streaming.agents.demo import DemoAgent, text_statistics, tokenize


@dataclass
class Transcript(Emitter):
    """An emitter that remembers everything, in order."""

    events: list[tuple[str, Any]] = field(default_factory=list)
    steps: int = 0

    async def step_started(
        self, *, kind: str, title: str, detail: str = "", metadata: dict[str, Any] | None = None
    ) -> int:
        self.steps += 1
        self.events.append(("step.started", (kind, title)))
        return self.steps - 1

    async def step_completed(
        self,
        index: int,
        *,
        status: str = StepStatus.COMPLETED,
        detail: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.events.append(("step.completed", (index, status, detail)))

    async def reasoning_delta(self, delta: str) -> None:
        self.events.append(("reasoning", delta))

    async def text_delta(self, delta: str) -> None:
        self.events.append(("text", delta))

    async def tool_call(self, *, call_id: str, name: str, arguments: dict[str, Any]) -> int:
        self.events.append(("tool.call", (call_id, name, arguments)))
        return await self.step_started(kind="tool_call", title=name)

    async def tool_result(self, *, call_id: str, result: Any, is_error: bool = False) -> None:
        self.events.append(("tool.result", (call_id, result, is_error)))

    async def usage(self, usage: Usage) -> None:
        self.events.append(("usage", usage))

    def text(self, kind: str = "text") -> str:
        return "".join(value for name, value in self.events if name == kind)


def run(text: str, history: list[Turn] | None = None) -> Transcript:
    transcript = Transcript()
    async_to_sync(DemoAgent().run)([*(history or []), Turn(role="user", content=text)], transcript)
    return transcript


def test_the_same_message_always_gets_the_same_reply() -> None:
    assert run("Where is my order 1234?").events == run("Where is my order 1234?").events


def test_the_answer_comes_from_the_users_text() -> None:
    transcript = run("How should I water my tomato plants during a heatwave?")

    assert "tomato" in transcript.text()
    assert "tomato" in transcript.text("reasoning")
    assert "tomato" not in run("Tell me about invoices").text()


def test_it_shows_analysis_decision_tool_reasoning_and_answer_in_that_order() -> None:
    transcript = run("Can you summarize the refund policy?")

    kinds = [value[0] for name, value in transcript.events if name == "step.started"]
    assert kinds == ["thinking", "decision", "tool_call", "reasoning", "result"]
    names = [name for name, _ in transcript.events]
    assert names.index("tool.call") < names.index("tool.result") < names.index("reasoning") < names.index("text")
    assert names[-1] == "usage"


def test_the_tool_result_is_the_text_statistics() -> None:
    transcript = run("Billing, billing and shipping questions.")

    result = next(value for name, value in transcript.events if name == "tool.result")
    assert result[1] == {"words": 5, "characters": 40, "sentences": 1, "keywords": ["billing", "shipping", "questions"]}


def test_greetings_get_an_introduction() -> None:
    assert "Brook's demo assistant" in run("hello!").text()


def test_usage_counts_the_prompt_and_the_streamed_tokens() -> None:
    transcript = run("What time is it?", history=[Turn(role="user", content="one two"), Turn("assistant", "three")])

    usage = transcript.events[-1][1]
    assert isinstance(usage, Usage)
    assert usage.prompt_tokens == 2 + 1 + 4
    streamed = sum(1 for name, _ in transcript.events if name in {"text", "reasoning"})
    assert usage.completion_tokens == streamed


def test_it_paces_itself_at_the_configured_token_rate(settings: Settings) -> None:
    settings.BROOK_DEMO_TOKENS_PER_SECOND = 40
    settings.BROOK_DEMO_STEP_SECONDS = 0.4
    pauses: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        pauses.append(seconds)

    with mock.patch("streaming.agents.demo.asyncio.sleep", fake_sleep):
        transcript = run("How do I export my data?")

    streamed = sum(1 for name, _ in transcript.events if name in {"text", "reasoning"})
    assert pauses.count(1 / 40) == streamed
    assert sum(p for p in pauses if p != 1 / 40) == 0.4 + 0.2 + 0.4  # analysis, decision, tool


def test_text_statistics_counts_words_and_picks_keywords_in_order_of_use() -> None:
    stats = text_statistics("Cats like cats. Dogs like dogs and cats!")

    assert (stats.words, stats.sentences) == (8, 2)
    assert stats.keywords == ["cats", "like", "dogs"]


@given(st.text())
def test_tokens_join_back_into_the_text(text: str) -> None:
    assert "".join(tokenize(text)) == text
