"""``kzero report``: a markdown report with PNG charts from measured figures.

Inputs: a ``kzero bench --json`` file and/or a Prometheus URL that scrapes kzero
predictors. The cold start comes from ``--cold_start_s``, a ``kzero bench
coldstart --json`` file (the median ready time of cache hits: the model on the
volume, as every cold start after the first finds it) or Prometheus
(``kzero_cold_start_seconds``, phase ready); a bench file has none.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from autoscaling.bench_results import BenchFigures, BenchFileError, read_bench, read_cold_start
from autoscaling.cost import SelfHosted, aws_lambda, cloud_run, lambda_memory_for_vcpus
from autoscaling.kpa import KpaConfig
from autoscaling.prices import PriceFileError, load_prices
from autoscaling.prometheus_source import PrometheusError, PrometheusFigures, read_prometheus
from predictor.cli_parsing import ArgumentParser, CommandError, run_command, set_run

if TYPE_CHECKING:
    from autoscaling.report import Inputs

T = TypeVar("T")
# The Helm chart's default `targetConcurrency` (charts/kzero/values.yaml).
CHART_TARGET_CONCURRENCY = 2.0
DEFAULT_NODE = "aws_c7i_xlarge"
CLOUD_RUN_MEMORY_GIB = 2.0


def build_parser(prog: str = "kzero report") -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description="Write a markdown report with PNG charts: cost per 1M tokens against "
        "traffic (self-hosted, AWS Lambda, Cloud Run, break-even points), latency percentiles "
        "including cold starts, and pods over time for request traces (KPA simulation).",
    )
    parser.add_argument("--bench", type=Path, help="a 'kzero bench --json' results file")
    parser.add_argument("--prometheus", help="Prometheus URL scraping kzero predictors")
    parser.add_argument(
        "--coldstart",
        type=Path,
        help="a 'kzero bench coldstart --json' file: the cold start is its median cache-hit ready time",
    )
    parser.add_argument(
        "--cold_start_s", type=float, help="overrides --coldstart's and Prometheus' cold start"
    )
    parser.add_argument("--tokens_per_s", type=float, help="overrides the measured tokens/s")
    parser.add_argument(
        "--parallel",
        type=int,
        help="requests a pod decodes together in the KPA replays (default: the highest "
        "concurrency the bench measured kzero at; 1 without a bench)",
    )
    parser.add_argument("--vcpus", type=float, help="vCPUs of one pod (default: the bench's)")
    parser.add_argument("--node", default=DEFAULT_NODE, help=f"node price entry ({DEFAULT_NODE})")
    parser.add_argument("--pods_per_node", type=int, help="default: node vCPUs / pod vCPUs")
    parser.add_argument(
        "--target",
        type=float,
        default=CHART_TARGET_CONCURRENCY,
        help="KPA per-pod concurrency target (default: the chart's targetConcurrency, 2)",
    )
    parser.add_argument(
        "--prefill_tokens_per_s",
        type=float,
        default=1000.0,
        help="prompt tokens/s of one pod in the simulation (default 1000, assumed)",
    )
    parser.add_argument("--prices", type=Path, help="price file (default: bundled prices.yaml)")
    parser.add_argument("--out", type=Path, default=Path("report"), help="output directory")
    parser.add_argument(
        "--title", default="kzero: self-hosted serverless against Lambda and Cloud Run"
    )
    parser.add_argument(
        "--note", action="append", default=[], help="a line for the report's inputs (repeatable)"
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bars")
    set_run(parser, report_run)
    return parser


# Below this many samples a p95 or p99 is only the maximum (as in bench/report.py).
MIN_SAMPLES_FOR_TAIL = 20


def _quantiles(values: list[float], prefix: str = "ttft") -> dict[str, float]:
    if not values:
        return {}
    row = {f"{prefix}_p50": statistics.median(values)}
    if len(values) >= MIN_SAMPLES_FOR_TAIL:
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        row |= {f"{prefix}_p95": cuts[94], f"{prefix}_p99": cuts[98]}
    return row


def _measured_ttft(
    bench: BenchFigures | None, prom: PrometheusFigures | None
) -> dict[str, dict[str, float]]:
    rows: dict[str, dict[str, float]] = {}
    if bench is not None:
        for concurrency, values in sorted(bench.ttft_s.items()):
            row = _quantiles(values)
            if concurrency == 1:
                # One request per batch: the batch's wall time is the request's end-to-end.
                row |= _quantiles(bench.e2e_s[1], prefix="e2e")
            rows[f"bench, warm, {concurrency} at once"] = row
    if prom is not None and prom.ttft_s:
        rows["Prometheus, all requests"] = {f"ttft_p{q}": v for q, v in prom.ttft_s.items()}
    return rows


def build_inputs(args: argparse.Namespace) -> Inputs:
    # Imported here: report pulls in matplotlib, which an argument error need not wait for.
    from autoscaling.report import Inputs

    if args.bench is None and args.prometheus is None:
        raise ValueError("give --bench FILE and/or --prometheus URL")
    bench = read_bench(args.bench) if args.bench else None
    prom = read_prometheus(args.prometheus) if args.prometheus else None
    if args.tokens_per_s:
        tokens_per_s, tps_source = args.tokens_per_s, "--tokens_per_s"
    elif bench is not None:
        tokens_per_s = bench.tokens_per_s
        tps_source = f"kzero at concurrency 1, median of {bench.path.name}, {bench.date_utc}"
    elif prom is not None and prom.tokens_per_s:
        tokens_per_s, tps_source = prom.tokens_per_s, f"Prometheus {prom.url}"
    else:
        raise ValueError("no tokens/s: Prometheus has no kzero requests; give --tokens_per_s")
    if args.cold_start_s is not None:
        cold_start, cold_source = args.cold_start_s, "--cold_start_s"
    elif args.coldstart is not None:
        cold_start, cold_source = read_cold_start(args.coldstart)
    elif prom is not None and prom.cold_start_s is not None:
        cold_start = prom.cold_start_s
        cold_source = f"mean of kzero_cold_start_seconds{{phase=ready}} in {prom.url}"
    else:
        raise ValueError(
            "no cold start: give --coldstart FILE, --prometheus (with a scraped predictor) "
            "or --cold_start_s"
        )
    parallel, batched = _batching(args, bench)
    prices = load_prices(args.prices)
    node = prices.node(args.node)
    vcpus = args.vcpus or (float(bench.usable_cpus) if bench else 2.0)
    kpa = KpaConfig(target=args.target)
    pods = args.pods_per_node or max(1, int(node.vcpus // vcpus))
    memory_gb = lambda_memory_for_vcpus(prices, vcpus)
    notes = [
        f"Prices as of {prices.as_of} ({prices.currency}), sources in autoscaling/prices.yaml."
    ]
    if bench is not None:
        notes.append(f"Benchmark machine: {bench.usable_cpus} usable CPUs, {bench.cpu_model}.")
    notes += args.note
    notes.append(
        f"Lambda and Cloud Run get {vcpus:g} vCPU (Lambda: {memory_gb:g} GB) and the same tokens/s."
    )
    return Inputs(
        tokens_per_s=tokens_per_s,
        tokens_per_s_source=tps_source,
        cold_start_s=cold_start,
        cold_start_source=cold_source,
        measured_ttft_s=_measured_ttft(bench, prom),
        self_hosted=SelfHosted(
            node,
            pods,
            tokens_per_s,
            cold_start,
            kpa.idle_before_zero_s,
            max_utilization=min(1.0, kpa.target_value),
        ),
        managed=[
            aws_lambda(prices, memory_gb, tokens_per_s),
            cloud_run(prices, vcpus, CLOUD_RUN_MEMORY_GIB, tokens_per_s),
        ],
        kpa=kpa,
        prefill_tokens_per_s=args.prefill_tokens_per_s,
        parallel=parallel,
        batched_tokens_per_s=batched,
        notes=notes,
    )


def _batching(args: argparse.Namespace, bench: BenchFigures | None) -> tuple[int, dict[int, float]]:
    """Slots per pod and the bench's aggregate tokens/s above concurrency 1.

    The batched figures describe the pod only when its single-stream figure
    came from the same bench: with --tokens_per_s they are left out.
    """
    measured = {}
    if bench is not None and not args.tokens_per_s:
        measured = {n: tps for n, tps in bench.tokens_per_s_by_concurrency.items() if n > 1}
    parallel = args.parallel or max([1, *measured])
    if parallel < 1:
        raise ValueError("--parallel must be at least 1")
    return parallel, {n: tps for n, tps in measured.items() if n <= parallel}


def report_main(argv: Sequence[str]) -> int:
    return run_command(build_parser(), argv, ["kzero", "report", *argv])


def report_run(args: argparse.Namespace) -> int:
    try:
        inputs = build_inputs(args)
    except (BenchFileError, PrometheusError, PriceFileError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    from tqdm import tqdm

    from autoscaling.report import write_report

    def progress(items: Iterable[T], desc: str, total: int) -> Iterable[T]:
        return tqdm(items, desc=desc, total=total, disable=args.no_progress, file=sys.stderr)

    command = shlex.join(args.command_line)
    path = write_report(inputs, args.out, args.title, command, progress)
    print(f"wrote {path} and its charts in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(report_main(sys.argv[1:]))
