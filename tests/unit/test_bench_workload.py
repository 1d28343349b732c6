"""`kzero bench --prompt_tokens` and `--kzero_args`: what the setups are sent and run with."""

from __future__ import annotations

import pytest

from bench.cli import PASSAGE, build_parser, workload_from_args
from bench.servers import kzero_variant_args
from bench.workload import PROMPTS, lengthened


def words(text: str) -> int:
    """A stand-in tokenizer: one token per word."""
    return len(text.split())


def test_prompts_are_lengthened_to_the_fewest_passage_words_that_reach_the_count() -> None:
    passage = " ".join(f"w{i}" for i in range(200))
    longer = lengthened(PROMPTS[:4], passage, 60, words)
    for opening, prompt in zip(PROMPTS[:4], longer, strict=True):
        assert prompt.startswith(opening + "\n\n")
        assert words(prompt) == 60  # each word is one "token": exactly reached, not passed
    # The distinct openings still come first: no two prompts share a prefix.
    assert len({prompt.split()[0] for prompt in longer}) == 4


def test_a_prompt_already_long_enough_is_left_alone() -> None:
    assert lengthened(PROMPTS[:1], "a b c", 3, words) == PROMPTS[:1]


def test_a_passage_too_short_for_the_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="too short"):
        lengthened(PROMPTS[:1], "a b c", 500, words)


def test_prompt_tokens_and_max_tokens_must_fit_the_context() -> None:
    args = build_parser().parse_args(
        ["--prompt_tokens", "2000", "--max_tokens", "128", "--n_ctx", "2048"]
    )
    with pytest.raises(ValueError, match="do not fit"):
        workload_from_args(args)


def test_the_passage_is_long_enough_for_any_prompt_that_fits_the_default_context() -> None:
    assert words(PASSAGE) > 2048


def test_kzero_args_reach_every_kzero_setup_last() -> None:
    args = build_parser().parse_args(["--kzero_args", "--flash_attn true --n_batch 256"])
    workload = workload_from_args(args)
    for parallel in (None, 8):
        assert kzero_variant_args(workload, parallel)[-4:] == [
            "--flash_attn", "true", "--n_batch", "256",
        ]  # fmt: skip
