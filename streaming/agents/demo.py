"""The built-in demo agent: no keys, no network, deterministic, paced like a model (docs/architecture.md).

It answers from the visitor's own text with the steps a real orchestrator shows: analyzing the prompt, a decision, a
tool call with its result, streamed reasoning and a streamed answer. Pacing comes from ``BROOK_DEMO_TOKENS_PER_SECOND``
(default 40) and ``BROOK_DEMO_STEP_SECONDS``; tests set both to 0.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from chat.models import StepKind
from streaming.agents.base import Agent, Emitter, Turn, Usage

MODEL_NAME = "brook-demo-1"

_TOKEN = re.compile(r"\s*\S+")
_WORD = re.compile(r"[^\W\d_][\w'-]*", re.UNICODE)
_STOPWORDS = frozenset(
    """a about an and are as at be but by can could do does for from have how i if in into is it its me my no not of
    on or our please so that the their them then there these they this to us was we what when where which who why will
    with would you your hi hello hey should shall must might may tell know get got just also some any all very much
    more most here than during over under after before been being had has were""".split()  # noqa: SIM905 - a word list reads better as prose
)
_GREETINGS = frozenset({"hi", "hello", "hey", "howdy", "greetings", "bonjour", "hola"})


def tokenize(text: str) -> list[str]:
    """Split text into model-like tokens (a word with the space before it); joining them gives the text back."""
    tokens = _TOKEN.findall(text)
    consumed = sum(len(token) for token in tokens)
    if consumed < len(text):  # trailing whitespace
        tokens.append(text[consumed:])
    return tokens


@dataclass(frozen=True, slots=True)
class TextStatistics:
    words: int
    characters: int
    sentences: int
    keywords: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "words": self.words,
            "characters": self.characters,
            "sentences": self.sentences,
            "keywords": self.keywords,
        }


def text_statistics(text: str) -> TextStatistics:
    """The demo agent's tool: counts and the three most frequent non-trivial words, in order of first use."""
    words = [word.lower() for word in _WORD.findall(text)]
    counts = Counter(word for word in words if word not in _STOPWORDS and len(word) > 2)
    first_seen = {word: i for i, word in reversed(list(enumerate(words)))}
    keywords = sorted(counts, key=lambda word: (-counts[word], first_seen[word]))[:3]
    sentences = max(1, len(re.findall(r"[.!?]+(?:\s|$)", text.strip()))) if text.strip() else 0
    return TextStatistics(words=len(words), characters=len(text), sentences=sentences, keywords=keywords)


def _classify(text: str, stats: TextStatistics) -> tuple[str, str]:
    words = {word.lower() for word in _WORD.findall(text)}
    if stats.words <= 4 and words & _GREETINGS:
        return "greeting", "A greeting: introduce myself and offer help."
    if text.strip().endswith("?") or (words & {"how", "what", "why", "when", "where", "which", "who", "can"}):
        return "question", "A question: answer it in three short parts."
    return "statement", "A statement: reflect it back and suggest a next step."


def _quote(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _join(words: list[str]) -> str:
    marked = [f"**{word}**" for word in words]
    if len(marked) <= 1:
        return "".join(marked)
    return ", ".join(marked[:-1]) + " and " + marked[-1]


def compose(text: str, stats: TextStatistics, kind: str) -> tuple[str, str]:
    """The demo reply to ``text``: (reasoning, answer). A pure function, so the same message always gets it."""
    topic = _join(stats.keywords) or "your message"
    focus = stats.keywords[0] if stats.keywords else "it"
    reasoning = (
        f"The visitor wrote {stats.words} words in {stats.sentences} sentence{'s' if stats.sentences != 1 else ''}. "
        f"The terms that stand out are {', '.join(stats.keywords) or 'none in particular'}. "
        + {
            "greeting": "It is a greeting, so I will say who I am and what I can show.",
            "question": f"It is a question about {focus}; I will restate it, answer in parts, and offer a next step.",
            "statement": f"It is a statement about {focus}; I will reflect it back and suggest what to do next.",
        }[kind]
    )
    if kind == "greeting":
        body = (
            "Hello! I am Brook's demo assistant. Ask me anything and watch the steps on the left: I analyze your "
            "message, decide how to answer, call a small tool, reason, and then write the answer token by token."
        )
    elif kind == "question":
        body = (
            f"You asked: “{_quote(text)}”\n\n"
            f"Here is how I would approach it, focusing on {topic}:\n\n"
            f"1. **Understand the goal.** Your question centers on {focus}; the first step is to pin down what a "
            "good outcome looks like for you.\n"
            f"2. **Check the facts.** Your message has {stats.words} words; the details you gave about {focus} are "
            "what a real model would reason over.\n"
            "3. **Take the next step.** Try one small change, see the result, and ask me a follow-up question."
        )
    else:
        body = (
            f"You said: “{_quote(text)}”\n\n"
            f"I picked up {topic} as the heart of it. A good next step is to say what you want to happen with "
            f"{focus}, so that the answer can be specific."
        )
    answer = body + (
        "\n\nThis reply comes from Brook's built-in demo agent, which runs with no model and no network. "
        "Point the tenant at a real model to get real answers."
    )
    return reasoning, answer


class DemoAgent(Agent):
    """Deterministic, offline agent that shows every kind of step; the answer depends only on the last user turn."""

    name = "demo"

    async def run(self, conversation: Sequence[Turn], emit: Emitter) -> None:
        token_pause = self._token_pause()
        step_pause = float(settings.BROOK_DEMO_STEP_SECONDS)
        text = next((turn.content for turn in reversed(conversation) if turn.role == "user"), "")

        async with emit.step(kind=StepKind.THINKING, title="Analyzing the prompt") as step:
            await asyncio.sleep(step_pause)
            stats = text_statistics(text)
            step.detail = f"Read {stats.words} words ({stats.characters} characters)."

        async with emit.step(kind=StepKind.DECISION, title="Choosing an approach") as step:
            await asyncio.sleep(step_pause / 2)
            kind, why = _classify(text, stats)
            step.detail = why
            step.metadata = {"approach": kind}

        call_id = "call_text_statistics"
        await emit.tool_call(call_id=call_id, name="text_statistics", arguments={"text": _quote(text, 500)})
        await asyncio.sleep(step_pause)
        await emit.tool_result(call_id=call_id, result=stats.as_dict())

        reasoning, answer = compose(text, stats, kind)
        reasoning_tokens = tokenize(reasoning)
        async with emit.step(kind=StepKind.REASONING, title="Reasoning"):
            for token in reasoning_tokens:
                await emit.reasoning_delta(token)
                await asyncio.sleep(token_pause)

        answer_tokens = tokenize(answer)
        async with emit.step(kind=StepKind.RESULT, title="Writing the answer") as step:
            for token in answer_tokens:
                await emit.text_delta(token)
                await asyncio.sleep(token_pause)
            step.detail = f"{len(answer_tokens)} tokens."

        prompt_tokens = sum(len(tokenize(turn.content)) for turn in conversation)
        await emit.usage(
            Usage(
                model=MODEL_NAME,
                prompt_tokens=prompt_tokens,
                completion_tokens=len(reasoning_tokens) + len(answer_tokens),
            )
        )

    @staticmethod
    def _token_pause() -> float:
        rate = float(settings.BROOK_DEMO_TOKENS_PER_SECOND)
        return 0.0 if rate <= 0 else 1.0 / rate
