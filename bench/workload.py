"""What every setup is asked to do: the same prompts, token budget and rounds.

Greedy decoding over HTTP cannot ignore the end-of-sequence token, so the
prompts are openings that invite a long continuation; throughput is computed
from the tokens actually generated, so an early stop skews nothing.

``llama_cpp.server`` reuses the KV cache of its previous request when a new
prompt starts the same way (kzero and the raw setup reset per request, and
``llama-server`` runs with prompt caching off). So no two consecutive requests
share a prompt: each request takes the next prompt of a rotation longer than
any two batches together, and the warm-up prompt is used for nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

WARMUP_PROMPT = "Good morning! Today we will talk about the weather, and"

# Distinct first words, so no prompt is a prefix of another's cache entry.
PROMPTS: tuple[str, ...] = (
    "The history of the printing press is a long story. It begins in",
    "Here is a detailed, step by step guide to baking bread at home. Step 1:",
    "Chapter 1\n\nThe old lighthouse keeper had lived on the island for forty years, and",
    "An introduction to the water cycle for students. Water on Earth is always moving.",
    "Dear diary, today was the strangest day of my life. It started when",
    "Ten tips for learning a new language quickly:\n\n1.",
    "In this tutorial we explain how a computer stores numbers in memory. First,",
    "Once upon a time, in a small village at the edge of a great forest, there lived",
    "Photosynthesis is the process by which plants turn sunlight into food. It works like this:",
    "My favourite recipe for a quick vegetable soup needs only a few ingredients:",
    "Welcome to the museum of natural history. On your left you can see",
    "Learning to ride a bicycle as an adult is easier than it sounds. The first thing",
    "A short biography of a famous explorer who sailed around the world. Born in",
    "Gardening for beginners: how to plan a small vegetable patch. Start by",
    "Sunday morning at the market was busy as always. The baker shouted",
    "Why do cats purr? Scientists have studied this question for years, and",
    "Volcanoes form where molten rock rises through the crust. The first sign is",
    "Every good map tells a story about the place it shows. This one",
    "Our family trip to the mountains began with a flat tyre, and",
    "Bees live in colonies that can hold tens of thousands of workers. Each day",
    "How does a refrigerator keep food cold? The answer starts with",
    "Last winter the river froze so hard that the whole town",
    "Before the invention of clocks, people told the time by",
    "Most people never think about where their tap water comes from. In fact,",
    "Imagine a city where every roof is covered with gardens. Such a city",
    "Coffee was first grown in the highlands of East Africa, where",
    "Rainforests cover a small part of the planet but hold",
    "Knitting a scarf is a good first project for beginners. You will need",
    "Thunderstorms build up on hot afternoons when warm, moist air",
    "Grandmother kept a small notebook of recipes in the kitchen drawer, and",
    "Saturn's rings are made of countless pieces of ice and rock that",
    "Public libraries offer much more than books. A typical branch today",
)


def lengthened(
    prompts: Sequence[str], passage: str, tokens: int, count_tokens: Callable[[str], int]
) -> tuple[str, ...]:
    """Each prompt followed by as much of ``passage`` as brings it to ``tokens`` tokens.

    The distinct openings stay first, so prompts still share no prefix and a
    server's prompt cache has nothing to reuse: what changes is the context
    every decode step attends over, as with real prompts longer than a line.
    """
    words = passage.split()
    longer = []
    for prompt in prompts:
        lo, hi = 0, len(words)  # fewest passage words that reach ``tokens``
        while lo < hi:
            middle = (lo + hi) // 2
            if count_tokens(_joined(prompt, words[:middle])) >= tokens:
                hi = middle
            else:
                lo = middle + 1
        if count_tokens(_joined(prompt, words[:lo])) < tokens:
            raise ValueError(f"the passage is too short to make prompts of {tokens} tokens")
        longer.append(_joined(prompt, words[:lo]))
    return tuple(longer)


def _joined(prompt: str, words: Sequence[str]) -> str:
    return f"{prompt}\n\n{' '.join(words)}" if words else prompt


@dataclass(frozen=True)
class Batch:
    """``concurrency`` prompts sent together in one round."""

    round_index: int
    concurrency: int
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class Workload:
    """The requests of one benchmark run, identical for every setup."""

    model_path: Path
    n_threads: int
    n_ctx: int
    n_batch: int
    max_tokens: int
    rounds: int
    concurrency: tuple[int, ...]
    # Sequences the batching servers decode at once (kzero's
    # --max_running_requests, llama-server's --parallel); n_ctx is per sequence.
    n_parallel: int = 1
    prompts: tuple[str, ...] = PROMPTS
    # What the prompts were lengthened to (``lengthened``); None: the openings alone.
    prompt_tokens: int | None = None
    # More ``kzero serve`` flags for every kzero setup (--kzero_args).
    kzero_extra_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.prompts) < 2 * max(self.concurrency):
            raise ValueError(
                f"{len(self.prompts)} prompts cannot keep consecutive batches of "
                f"{max(self.concurrency)} apart; use concurrency levels up to {len(self.prompts) // 2}"
            )

    def schedule(self) -> Iterator[Batch]:
        """Every batch of the run in order; prompts rotate request by request."""
        next_prompt = 0
        for round_index in range(self.rounds):
            for concurrency in self.concurrency:
                indices = range(next_prompt, next_prompt + concurrency)
                prompts = tuple(self.prompts[i % len(self.prompts)] for i in indices)
                yield Batch(round_index, concurrency, prompts)
                next_prompt += concurrency
