"""Reasoning in tags, split from the answer as it streams: ``<think>…</think>``, ``<thinking>…</thinking>`` and kin.

docs/providers.md, "What a call looks like in the log". Models that reason in their text (DeepSeek-R1 and Qwen3
served by vLLM or Ollama, Claude prompted with ``<thinking>``, OpenThoughts' ``<|begin_of_thought|>``) mix
reasoning and answer in one stream.
``TagSplitter`` takes the text in whatever chunks it arrives and hands back ``("reasoning", …)`` and ``("text", …)``
pieces; any chunking of the same output gives the same reasoning and answer. Rules:

- a tag split across chunks is recognized (the possible start of a tag is held back until it is decided);
- ``starts_in_reasoning`` is for templates that put the opening ``<think>`` in the prompt (Qwen3): the output starts
  inside the block and its first closing tag ends it;
- a closing tag with no block open is dropped; an empty block gives nothing;
- tags inside code fences (```) are text;
- answer wrappers (``<answer>``, ``<|begin_of_solution|>`` and their closing tags) are dropped, their content is text;
- a block still open at the end is reasoning; whitespace right after a block is not part of the answer.
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["reasoning", "text"]

BLOCKS = {
    "<think>": "</think>",
    "<thinking>": "</thinking>",
    "<reasoning>": "</reasoning>",
    "<thought>": "</thought>",
    "<|begin_of_thought|>": "<|end_of_thought|>",
}
ANSWER_TAGS = ("<answer>", "</answer>", "<|begin_of_solution|>", "<|end_of_solution|>")
FENCE = "```"
_CLOSERS = tuple(BLOCKS.values())
_TEXT_TOKENS = (*BLOCKS, *_CLOSERS, *ANSWER_TAGS, FENCE)


def _earliest(buffer: str, tokens: tuple[str, ...]) -> tuple[int, str] | None:
    best: tuple[int, str] | None = None
    for token in tokens:
        at = buffer.find(token)
        if at != -1 and (best is None or at < best[0] or (at == best[0] and len(token) > len(best[1]))):
            best = (at, token)
    return best


def _partial_suffix(buffer: str, tokens: tuple[str, ...]) -> int:
    """Length of the longest end of ``buffer`` that could be the start of a token (and is shorter than it).

    Such an end starts with a token's first character (``<`` or a backtick), so only those places are tried: most
    chunks have none, and this runs once per chunk of every reply (it was half the relay's CPU per token).
    """
    firsts = {token[0] for token in tokens}
    tail = buffer[-(max(map(len, tokens)) - 1) :]
    for at, char in enumerate(tail):
        if char in firsts:
            end = tail[at:]
            if any(len(end) < len(token) and token.startswith(end) for token in tokens):
                return len(end)
    return 0


class TagSplitter:
    """Feed text chunks; get back reasoning and answer pieces in order."""

    def __init__(self, *, starts_in_reasoning: bool = False) -> None:
        self._buffer = ""
        self._closer: str | None = "</think>" if starts_in_reasoning else None
        self._in_fence = False
        self._strip_whitespace = False

    def feed(self, chunk: str) -> list[tuple[Kind, str]]:
        self._buffer += chunk
        return self._drain(final=False)

    def finish(self) -> list[tuple[Kind, str]]:
        return self._drain(final=True)

    def _tokens(self) -> tuple[str, ...]:
        if self._closer is not None:
            return (self._closer,)
        return (FENCE,) if self._in_fence else _TEXT_TOKENS

    def _drain(self, *, final: bool) -> list[tuple[Kind, str]]:
        out: list[tuple[Kind, str]] = []
        while True:
            tokens = self._tokens()
            found = _earliest(self._buffer, tokens)
            if found is None:
                keep = 0 if final else _partial_suffix(self._buffer, tokens)
                self._emit(out, self._buffer[: len(self._buffer) - keep])
                self._buffer = self._buffer[len(self._buffer) - keep :]
                return out
            at, token = found
            self._emit(out, self._buffer[:at])
            self._buffer = self._buffer[at + len(token) :]
            self._take(token, out)

    def _take(self, token: str, out: list[tuple[Kind, str]]) -> None:
        if self._closer is not None:  # the block's end
            self._closer = None
            self._strip_whitespace = True
        elif token == FENCE:
            self._in_fence = not self._in_fence
            self._emit(out, token)
        elif token in BLOCKS:
            self._closer = BLOCKS[token]
        # Stray closing tags and answer wrappers are dropped.

    def _emit(self, out: list[tuple[Kind, str]], piece: str) -> None:
        if self._closer is None and self._strip_whitespace:
            stripped = piece.lstrip()
            if stripped:
                self._strip_whitespace = False
            piece = stripped
        if not piece:
            return
        kind: Kind = "reasoning" if self._closer is not None else "text"
        if out and out[-1][0] == kind:
            out[-1] = (kind, out[-1][1] + piece)
        else:
            out.append((kind, piece))
