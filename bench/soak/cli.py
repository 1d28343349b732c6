"""``kzero bench soak``: arguments, the run, the report and the exit status."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from bench.arguments import add_model_argument
from bench.facts import machine_facts
from bench.harness.process import sigterm_as_exit
from bench.soak.judge import judge
from bench.soak.load import SoakConfig, run_soak
from bench.soak.memory import RSS_GROWTH_LIMIT
from bench.soak.summary import format_summary
from predictor.cli_parsing import CommandError, positive_float, positive_int, set_run
from predictor.default_model import DefaultModelMissing, default_model_path

DESCRIPTION = (
    "Start kzero serve on loopback and keep N streaming chat completions in flight for a "
    "while. Fails (exit 1) on any error or stuck request, resident memory growing "
    f"{RSS_GROWTH_LIMIT:.0%} or more after warm-up, request gauges not back to 0, or counters "
    "that disagree with the client."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    set_run(parser, run)
    add_model_argument(parser)
    parser.add_argument(
        "--duration", type=positive_float, default=600.0, help="Seconds of load. Default: 600."
    )
    parser.add_argument(
        "--concurrency", type=positive_int, default=8, help="Streams in flight. Default: 8."
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=60.0,
        help="Seconds of load before the RSS baseline is taken. Default: 60.",
    )
    parser.add_argument(
        "--max_tokens", type=positive_int, default=64, help="max_tokens per request. Default: 64."
    )
    parser.add_argument(
        "--request_timeout",
        type=positive_float,
        default=60.0,
        help="A request still running after this many seconds counts as stuck. Default: 60.",
    )
    parser.add_argument(
        "--sample_every",
        type=positive_float,
        default=5.0,
        help="Seconds between RSS samples. Default: 5.",
    )
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.warmup < args.duration:
        raise CommandError("--warmup must be at least 0 and below --duration")
    try:
        model = args.model if args.model is not None else default_model_path()
    except DefaultModelMissing as exc:
        raise CommandError(str(exc)) from None
    if not model.is_file():
        raise CommandError(f"model file not found: {model}")
    config = SoakConfig(
        model=model,
        duration_s=args.duration,
        concurrency=args.concurrency,
        warmup_s=args.warmup,
        max_tokens=args.max_tokens,
        request_timeout_s=args.request_timeout,
        sample_every_s=args.sample_every,
    )
    facts = machine_facts()
    try:
        with sigterm_as_exit():
            soak = run_soak(config)
    except (RuntimeError, TimeoutError) as exc:
        raise CommandError(str(exc), status=1) from exc
    summary = judge(config, soak)
    print(format_summary(config, summary, facts), flush=True)
    if args.json is not None:
        payload = {
            "command": args.command_line,
            "facts": facts,
            "config": {**asdict(config), "model": str(config.model)},
            "summary": summary,
            "rss_samples": [asdict(sample) for sample in soak.rss],
            "failures": [asdict(r) for r in soak.results if r.outcome != "ok"],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0 if summary["passed"] else 1
