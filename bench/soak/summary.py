"""The soak's printed report."""

from __future__ import annotations

from typing import Any

from bench.soak.load import SoakConfig


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


def _ms(stats: dict[str, float] | None) -> str:
    if stats is None:
        return "-"
    return "  ".join(f"{k} {v * 1000:.0f} ms" for k, v in stats.items())


def format_summary(config: SoakConfig, summary: dict[str, Any], facts: dict[str, Any]) -> str:
    rss = summary["rss"]
    requests = summary["requests"]
    lines = [
        f"kzero bench soak  {facts['date_utc']}",
        f"machine: nproc {facts['nproc']}, usable CPUs {facts['usable_cpus']}, {facts['cpu_model']}",
        f"model: {config.model.name}  concurrency {config.concurrency}  duration {config.duration_s:g} s"
        f"  warm-up {config.warmup_s:g} s  max_tokens {config.max_tokens}"
        f"  request deadline {config.request_timeout_s:g} s",
        "",
        f"requests: {requests['total']} in {summary['load_s']:.1f} s, ok {requests['ok']}, "
        f"stuck {requests['stuck']}, errors {sum(requests['errors'].values())}",
        f"throughput: {summary['requests_per_s']:.2f} req/s, {summary['tokens_per_s']:.1f} tok/s "
        f"({summary['completion_tokens']} tokens)",
        f"latency: {_ms(summary['latency_s'])}",
        f"TTFT:    {_ms(summary['ttft_s'])}",
        f"RSS: first {_mib(rss.get('first_bytes'))}, baseline {_mib(rss.get('baseline_bytes'))}, "
        f"final {_mib(rss.get('final_bytes'))}, peak {_mib(rss.get('peak_bytes'))}, "
        f"idle after {_mib(rss.get('idle_bytes'))} (medians of {rss.get('window_samples', '-')} "
        f"samples every {config.sample_every_s:g} s)",
        f"machine load average (1 min) at start/end: {summary['loadavg_start_end'][0]:.2f}"
        f" / {summary['loadavg_start_end'][1]:.2f}",
        f"after warm-up, threads first/last {rss['threads_first_last']}, open fds first/last "
        f"{rss['open_fds_first_last']}",
        "",
    ]
    for name, verdict in summary["criteria"].items():
        lines.append(f"{'PASS' if verdict['passed'] else 'FAIL'}  {name:12} {verdict['detail']}")
    if summary["failed"]:
        lines.append(f"\nsoak FAILED: {', '.join(summary['failed'])}")
    else:
        lines.append("\nsoak passed")
    return "\n".join(lines)
