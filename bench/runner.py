"""The interleaved measurement loop.

Within each round and concurrency level the setups take turns (a, b, c, a, b,
c...), so a burst of load from a neighbour on a shared machine lands on all of
them rather than on whichever happened to be measured at that moment.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from bench.samples import BatchSample, RequestSample
from bench.workload import WARMUP_PROMPT, Workload


class Setup(Protocol):
    """One way of serving the model that the bench measures."""

    key: str

    async def run_batch(
        self, prompts: Sequence[str], max_tokens: int
    ) -> tuple[float, list[RequestSample]]:
        """Run the prompts as one batch; returns its wall time and one sample per request."""
        ...


async def measure(
    workload: Workload, setups: Sequence[Setup], progress: Callable[[str], None]
) -> list[BatchSample]:
    """Warm every setup up once, then run all rounds, interleaving setups batch by batch."""
    for setup in setups:
        # First requests pay for lazy allocations and cold caches; not measured.
        await setup.run_batch([WARMUP_PROMPT], workload.max_tokens)
    samples: list[BatchSample] = []
    for batch in workload.schedule():
        for setup in setups:
            wall_s, requests = await setup.run_batch(batch.prompts, workload.max_tokens)
            samples.append(
                BatchSample(
                    setup.key, batch.concurrency, batch.round_index, wall_s, tuple(requests)
                )
            )
        progress(
            f"round {batch.round_index + 1}/{workload.rounds}, concurrency {batch.concurrency}: done"
        )
    return samples
