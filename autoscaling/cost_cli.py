"""``kzero cost``: self-hosted Knative against AWS Lambda and Cloud Run, as a table.

With no arguments it prints the seed study's table and the same scenario on a
self-hosted 4-vCPU node. With ``--bench FILE`` the self-hosted pod runs at
kzero's measured tokens/s, and the managed clouds get the same vCPUs and speed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoscaling import seed
from autoscaling.bench_results import BenchFileError, read_bench
from autoscaling.cost import (
    TOKENS_PER_REQUEST,
    ManagedServerless,
    Row,
    SelfHosted,
    aws_lambda,
    cloud_run,
    compare,
    lambda_memory_for_vcpus,
)
from autoscaling.kpa import KpaConfig
from autoscaling.prices import PriceFileError, Prices, load_prices
from predictor.cli_parsing import ArgumentParser, CommandError, positive_float, run_command, set_run

DEFAULT_NODE = "aws_c7i_xlarge"
# Not measured for the seed model here: the seconds a cached 1B GGUF takes to be
# served from a cold pod (kzero's SmolLM2 is ready in about 3 s on 2 cores).
SEED_COLD_START_S = 10.0
CLOUD_RUN_MIN_GIB_PER_VCPU = 0.5


@dataclass(frozen=True)
class Scenario:
    title: str
    self_hosted: SelfHosted
    managed: list[ManagedServerless]
    assumptions: list[str]


def build_parser(prog: str = "kzero cost") -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description="Cost per 500-token request and per 1M tokens: self-hosted Knative "
        "(always on, scale to zero) against AWS Lambda and Cloud Run, with break-even "
        "request rates. No arguments: the seed study's scenario.",
    )
    parser.add_argument("--bench", type=Path, help="a 'kzero bench --json' results file")
    parser.add_argument("--tokens_per_s", type=positive_float, help="tokens/s of one pod")
    parser.add_argument("--vcpus", type=positive_float, help="vCPUs of one pod")
    parser.add_argument("--cold_start_s", type=float, help="seconds from pod creation to serving")
    parser.add_argument(
        "--rate", type=positive_float, default=0.01, help="traffic, requests/s. Default: 0.01"
    )
    parser.add_argument("--tokens", type=int, default=TOKENS_PER_REQUEST, help="tokens/request")
    parser.add_argument("--node", default=DEFAULT_NODE, help=f"node price entry ({DEFAULT_NODE})")
    parser.add_argument("--pods_per_node", type=int, help="default: node vCPUs / pod vCPUs")
    parser.add_argument("--prices", type=Path, help="price file (default: bundled prices.yaml)")
    set_run(parser, cost_run)
    return parser


def seed_scenario(prices: Prices, args: argparse.Namespace) -> Scenario:
    node = prices.node(args.node)
    tokens_per_s = args.tokens_per_s or seed.CLOUD_RUN_TOKENS_PER_S
    vcpus = args.vcpus or seed.CLOUD_RUN_VCPUS
    cold_start = args.cold_start_s if args.cold_start_s is not None else SEED_COLD_START_S
    pods = args.pods_per_node or max(1, int(node.vcpus // vcpus))
    kpa = KpaConfig(target=1)
    return Scenario(
        title=f"seed scenario: {seed.MODEL}, {seed.MEMORY_GB:g} GB",
        self_hosted=SelfHosted(node, pods, tokens_per_s, cold_start, kpa.idle_before_zero_s),
        managed=seed.seed_offers(),
        assumptions=[
            f"self-hosted pod: {vcpus:g} vCPU on {node.name} (${node.per_hour}/h, "
            f"{pods} pod(s) per node) at {tokens_per_s:g} tok/s"
            + ("" if args.tokens_per_s else ", assumed equal to Cloud Run's 4 vCPU"),
            f"cold start {cold_start:g} s"
            + ("" if args.cold_start_s is not None else " (assumed, not measured)"),
            "managed rows: the seed study's published rates, no request fee",
        ],
    )


def bench_scenario(prices: Prices, args: argparse.Namespace) -> Scenario:
    figures = read_bench(args.bench)
    node = prices.node(args.node)
    tokens_per_s = args.tokens_per_s or figures.tokens_per_s
    vcpus = args.vcpus or float(figures.usable_cpus)
    if args.cold_start_s is None:
        raise ValueError("--cold_start_s is required with --bench (a bench file has no cold start)")
    pods = args.pods_per_node or max(1, int(node.vcpus // vcpus))
    kpa = KpaConfig(target=1)
    memory_gb = lambda_memory_for_vcpus(prices, vcpus)
    cloud_run_gib = max(2.0, vcpus * CLOUD_RUN_MIN_GIB_PER_VCPU)
    return Scenario(
        title=f"measured: kzero, {figures.path.name} ({figures.date_utc})",
        self_hosted=SelfHosted(node, pods, tokens_per_s, args.cold_start_s, kpa.idle_before_zero_s),
        managed=[
            aws_lambda(prices, memory_gb, tokens_per_s),
            cloud_run(prices, vcpus, cloud_run_gib, tokens_per_s),
        ],
        assumptions=[
            f"{tokens_per_s:.2f} tok/s per pod (kzero, concurrency 1, median), "
            f"{vcpus:g} vCPU ({figures.cpu_model})",
            f"self-hosted: {node.name} ${node.per_hour}/h, {pods} pod(s) per node; "
            f"cold start {args.cold_start_s:g} s",
            f"managed clouds run at the same tok/s with the same vCPUs "
            f"(Lambda {memory_gb:g} GB buys {vcpus:g} vCPU)",
        ],
    )


def _money(value: float) -> str:
    return f"${value:.6f}" if value < 0.01 else f"${value:,.4f}"


def _rate(value: float | None) -> str:
    if value is None:
        return "never"
    if value <= 1.0 / 86400 * 1.0001:
        return "always"
    per_hour = value * 3600
    return f"{value:.4g}/s ({per_hour:,.1f}/h)"


def format_rows(rows: Sequence[Row], managed: Sequence[ManagedServerless]) -> str:
    header = f"{'':46}{'$/request':>12}{'$/1M tokens':>13}  notes"
    lines = [header]
    for row in rows:
        lines.append(
            f"{row.label:46}{_money(row.per_request):>12}{row.per_million_tokens:>13.2f}  {row.note}"
        )
    lines.append("")
    lines.append("break-even: self-hosted costs no more than the managed cloud from this rate on")
    for row in rows:
        for offer in managed:
            if offer.name in row.break_even_rps:
                lines.append(
                    f"  {row.label} vs {offer.name}: {_rate(row.break_even_rps[offer.name])}"
                )
    return "\n".join(lines)


# Traffic levels of the by-traffic table: one request an hour to 1000 an hour.
TRAFFIC_PER_HOUR = (1, 10, 100, 1000)


def format_by_traffic(scenario: Scenario, tokens: int) -> str:
    """$/request of every row at a few traffic levels, so the crossover shows at a glance."""
    head = "".join(f"{f'{n}/h':>12}" for n in TRAFFIC_PER_HOUR)
    lines = [f"$/request by traffic{'':26}{head}"]
    for rate_per_hour in TRAFFIC_PER_HOUR:
        rows = compare(scenario.self_hosted, scenario.managed, rate_per_hour / 3600, tokens)
        for index, row in enumerate(rows):
            if len(lines) <= index + 1:
                lines.append(f"{row.label:46}")
            lines[index + 1] += f"{_money(row.per_request):>12}"
    return "\n".join(lines)


def format_seed_table(prices: Prices) -> str:
    lines = [
        f"seed study ({seed.MODEL}, {seed.MEMORY_GB:g} GB), per {TOKENS_PER_REQUEST}-token request:",
        f"{'platform':38}{'$/s':>12}{'tok/s':>7}{'$/token':>12}{'$/request':>11}",
    ]
    for row in seed.seed_table():
        lines.append(
            f"{row.platform:38}{row.rate_per_s:>12.8f}{row.tokens_per_s:>7.2f}"
            f"{row.per_token:>12.8f}{row.per_request:>11.5f}"
        )
    recomputed = seed.list_price_rates(prices)
    for platform, rate in recomputed.items():
        published = next(r.rate_per_s for r in seed.seed_table() if r.platform == platform)
        if abs(rate - published) / published > 0.01:
            lines.append(
                f"note: {platform} at the list prices of {prices.as_of} is ${rate:.6f}/s, "
                f"not the published ${published:.6f}/s"
            )
    return "\n".join(lines)


def cost_main(argv: Sequence[str]) -> int:
    return run_command(build_parser(), argv, ["kzero", "cost", *argv])


def cost_run(args: argparse.Namespace) -> int:
    try:
        prices = load_prices(args.prices)
        scenario = bench_scenario(prices, args) if args.bench else seed_scenario(prices, args)
        rows = compare(scenario.self_hosted, scenario.managed, args.rate, args.tokens)
    except (PriceFileError, BenchFileError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    if not args.bench:
        print(format_seed_table(prices))
        print()
    print(f"{scenario.title}; traffic {args.rate:g} requests/s of {args.tokens} tokens")
    print("\n".join(f"  {line}" for line in scenario.assumptions))
    print(f"  prices as of {prices.as_of} ({prices.currency}); sources in autoscaling/prices.yaml")
    print()
    print(format_rows(rows, scenario.managed))
    print()
    print(format_by_traffic(scenario, args.tokens))
    return 0


if __name__ == "__main__":
    raise SystemExit(cost_main(sys.argv[1:]))
