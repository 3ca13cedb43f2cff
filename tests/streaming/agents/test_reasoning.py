"""The tag splitter: reasoning and answer come out the same however the model's output is chunked."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streaming.agents.reasoning import TagSplitter


def split(chunks: list[str], *, starts_in_reasoning: bool = False) -> tuple[str, str]:
    splitter = TagSplitter(starts_in_reasoning=starts_in_reasoning)
    pieces = [piece for chunk in chunks for piece in splitter.feed(chunk)] + splitter.finish()
    reasoning = "".join(text for kind, text in pieces if kind == "reasoning")
    answer = "".join(text for kind, text in pieces if kind == "text")
    return reasoning, answer


@pytest.mark.parametrize(
    ("output", "reasoning", "answer"),
    [
        ("<think>Let me see.</think>\n\nIt is 4.", "Let me see.", "It is 4."),
        ("<thinking>hmm</thinking><answer>Yes.</answer>", "hmm", "Yes."),
        ("<reasoning>a</reasoning>b", "a", "b"),
        ("<thought>a</thought>b", "a", "b"),
        ("<|begin_of_thought|>a<|end_of_thought|><|begin_of_solution|>b<|end_of_solution|>", "a", "b"),
        ("<think></think>Answer", "", "Answer"),
        ("Answer</think> more", "", "Answer more"),
        ("Use ```<think>x</think>``` literally", "", "Use ```<think>x</think>``` literally"),
        ("<think>never closed", "never closed", ""),
        ("plain text, no tags", "", "plain text, no tags"),
        ("a < b and c > d", "", "a < b and c > d"),
    ],
)
def test_it_splits_reasoning_from_the_answer(output: str, reasoning: str, answer: str) -> None:
    assert split([output]) == (reasoning, answer)


def test_a_closing_tag_with_no_opening_one_ends_reasoning_the_prompt_opened() -> None:
    assert split(["Thinking first.", "</think>\n", "The answer."], starts_in_reasoning=True) == (
        "Thinking first.",
        "The answer.",
    )


def test_a_tag_split_across_chunks_is_recognized() -> None:
    assert split(["<th", "ink>deep</thi", "nk>", "done"]) == ("deep", "done")


def test_pieces_come_out_as_soon_as_they_are_known() -> None:
    splitter = TagSplitter()

    assert splitter.feed("<think>step one") == [("reasoning", "step one")]
    assert splitter.feed(" and </th") == [("reasoning", " and ")]
    assert splitter.feed("ink>Result") == [("text", "Result")]


FRAGMENTS = st.sampled_from(
    [
        "<think>",
        "</think>",
        "<thinking>",
        "</thinking>",
        "<answer>",
        "</answer>",
        "<|begin_of_thought|>",
        "<|end_of_thought|>",
        "```",
        "<",
        ">",
        "</",
        "\n",
        " ",
        "word",
        "x<y",
        "think",
    ]
)


@given(
    output=st.lists(FRAGMENTS, max_size=30).map("".join),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=12),
    starts_in_reasoning=st.booleans(),
)
def test_any_chunking_gives_the_same_reasoning_and_answer(
    output: str, cuts: list[int], starts_in_reasoning: bool
) -> None:
    points = sorted({cut % (len(output) + 1) for cut in cuts})
    chunks = [output[a:b] for a, b in zip([0, *points], [*points, len(output)], strict=True)]

    assert split(chunks, starts_in_reasoning=starts_in_reasoning) == split(
        [output], starts_in_reasoning=starts_in_reasoning
    )
