"""``kzero bench attention``: one decode step with flash attention off and on.

kzero's llama.cpp engine keeps flash attention off unless ``--flash_attn true``
(docs/architecture.md, "The CPU engine"). This measures what that costs and
buys: the time of one ``llama_decode`` of one token per sequence, on contexts
built like kzero's (split KV streams, one per sequence), for several context
lengths and numbers of sequences. Both contexts are created once, on one
loaded model, and every round measures each configuration with flash attention
off, then on, so drift on a shared machine moves both; the report gives the
median step of each and their ratio. Nothing in HTTP or Python beyond the
``llama_decode`` call is timed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.arguments import add_model_argument, add_threads_argument
from bench.facts import llama_cpp_system_info, machine_facts
from predictor.backends.llamacpp_engine import llama_cpp_library
from predictor.cli_parsing import CommandError, positive_int, positive_ints, set_run
from predictor.cpu_quota import usable_cpu_count
from predictor.default_model import DefaultModelMissing, default_model_path

DESCRIPTION = __doc__.split("\n\n", 1)[1]
# Steps measured per configuration and round; the first few warm the graph.
STEPS = 24
WARM_STEPS = 4


@dataclass(frozen=True)
class StepTime:
    context: int  # tokens in each sequence's context before the timed steps
    sequences: int
    off_ms: float  # median decode step, flash attention off
    on_ms: float

    @property
    def off_over_on(self) -> float:
        return self.off_ms / self.on_ms


class DecodeContext:
    """One llama.cpp context as kzero's engine makes it, flash attention off or on."""

    def __init__(
        self,
        lib: Any,
        model: Any,
        flash_attn: bool,
        sequences: int,
        n_ctx_per_seq: int,
        threads: int,
    ) -> None:
        params = lib.llama_context_default_params()
        params.n_ctx = sequences * n_ctx_per_seq
        params.n_batch = params.n_ubatch = 512
        params.n_seq_max = sequences
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = False
        params.flash_attn_type = (
            lib.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else lib.LLAMA_FLASH_ATTN_TYPE_DISABLED
        )
        params.no_perf = True
        self._lib = lib
        self._ctx = lib.llama_init_from_model(model, params)
        if not self._ctx:
            raise RuntimeError("llama.cpp could not create the context")
        self._batch = lib.llama_batch_init(512, 0, 1)

    def close(self) -> None:
        self._lib.llama_batch_free(self._batch)
        self._lib.llama_free(self._ctx)

    def _decode(self, entries: list[tuple[int, int, int, bool]]) -> float:
        """Decode (token, position, sequence, logits) entries as one batch; returns seconds."""
        batch = self._batch
        for index, (token, position, seq_id, logits) in enumerate(entries):
            batch.token[index] = token
            batch.pos[index] = position
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = seq_id
            batch.logits[index] = logits
        batch.n_tokens = len(entries)
        started = time.perf_counter()
        status = self._lib.llama_decode(self._ctx, batch)
        elapsed = time.perf_counter() - started
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")
        return elapsed

    def median_step_ms(self, sequences: int, context: int, tokens: Callable[[int], int]) -> float:
        """Fill ``sequences`` sequences with ``context`` tokens, then time decode steps."""
        lib = self._lib
        lib.llama_memory_clear(lib.llama_get_memory(self._ctx), True)
        for seq_id in range(sequences):  # the prompts, 256 tokens a batch
            for start in range(0, context, 256):
                end = min(context, start + 256)
                self._decode(
                    [(tokens(p + seq_id), p, seq_id, p == end - 1) for p in range(start, end)]
                )
        times = [
            self._decode(
                [(tokens(context + step + s), context + step, s, True) for s in range(sequences)]
            )
            for step in range(STEPS)
        ]
        return statistics.median(times[WARM_STEPS:]) * 1000


def measure(
    model_path: Path,
    contexts: tuple[int, ...],
    sequences: tuple[int, ...],
    rounds: int,
    threads: int,
) -> list[StepTime]:
    lib = llama_cpp_library()  # quiet, initialised, as the engine uses it
    model = lib.llama_model_load_from_file(
        str(model_path).encode(), lib.llama_model_default_params()
    )
    if not model:
        raise RuntimeError(f"llama.cpp failed to load {model_path}")
    vocab = lib.llama_model_get_vocab(model)
    n_vocab = int(lib.llama_vocab_n_tokens(vocab))

    # Ordinary tokens from the middle of the vocabulary, varied by position.
    def tokens(i: int) -> int:
        return 1000 + (i * 7919) % (n_vocab // 2)

    per_seq = max(contexts) + STEPS
    per_seq = -(-per_seq // 256) * 256
    most = max(sequences)
    off = DecodeContext(lib, model, False, most, per_seq, threads)
    on = DecodeContext(lib, model, True, most, per_seq, threads)
    try:
        results = []
        for context in contexts:
            for count in sequences:
                pairs = [
                    (
                        off.median_step_ms(count, context, tokens),
                        on.median_step_ms(count, context, tokens),
                    )
                    for _ in range(rounds)
                ]
                results.append(
                    StepTime(
                        context,
                        count,
                        statistics.median(p[0] for p in pairs),
                        statistics.median(p[1] for p in pairs),
                    )
                )
                print(format_row(results[-1]), flush=True)
        return results
    finally:
        off.close()
        on.close()
        lib.llama_model_free(model)


def format_row(row: StepTime) -> str:
    return (
        f"| {row.context} | {row.sequences} | {row.off_ms:.1f} ms | {row.on_ms:.1f} ms "
        f"| {row.off_over_on:.2f} |"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    set_run(parser, run)
    add_model_argument(parser)
    parser.add_argument(
        "--contexts",
        type=positive_ints,
        default=(40, 300, 1000),
        help="Comma-separated tokens of context per sequence. Default: 40,300,1000.",
    )
    parser.add_argument(
        "--sequences",
        type=positive_ints,
        default=(1, 8),
        help="Comma-separated sequences decoded together. Default: 1,8.",
    )
    parser.add_argument(
        "--rounds", type=positive_int, default=3, help="Rounds; medians over them. Default: 3."
    )
    add_threads_argument(parser, "llama.cpp")
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows here.")


def run(args: argparse.Namespace) -> int:
    try:
        model = args.model or default_model_path()
    except DefaultModelMissing as exc:
        raise CommandError(str(exc)) from exc
    if not model.is_file():
        raise CommandError(f"model file not found: {model}")
    threads = args.n_threads or usable_cpu_count()
    facts = machine_facts()
    facts["llama_cpp_system_info"] = llama_cpp_system_info()
    print(f"kzero bench attention  {facts['date_utc']}  model {model.name}  threads {threads}")
    print(f"median llama_decode step of one token per sequence, {args.rounds} rounds, off then on")
    print("| context per sequence | sequences | flash attention off | on | off / on |")
    print("|---|---|---|---|---|")
    try:
        rows = measure(model, args.contexts, args.sequences, args.rounds, threads)
    except RuntimeError as exc:
        raise CommandError(str(exc), status=1) from exc
    if args.json is not None:
        payload = {
            "facts": facts,
            "rows": [asdict(row) | {"off_over_on": row.off_over_on} for row in rows],
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0
