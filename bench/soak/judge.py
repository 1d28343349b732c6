"""The soak's criteria, judged from one run's measurements."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bench.harness.metrics import label_values, value
from bench.soak.load import GAUGES, SoakConfig, SoakRun
from bench.soak.memory import RSS_GROWTH_LIMIT, rss_growth


def _percentiles(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    return {"p50": rank(0.5), "p95": rank(0.95), "p99": rank(0.99), "max": ordered[-1]}


def _delta(run: SoakRun, name: str, **labels: str) -> float:
    return value(run.metrics_after, name, **labels) - value(run.metrics_before, name, **labels)


def judge(config: SoakConfig, run: SoakRun) -> dict[str, Any]:
    """The summary: figures and one pass/fail line per criterion."""
    outcomes = Counter(r.outcome for r in run.results)
    ok = [r for r in run.results if r.outcome == "ok"]
    errors = {kind: n for kind, n in outcomes.items() if kind not in ("ok", "stuck")}
    memory = rss_growth(run.rss, config.warmup_s, config.sample_every_s)
    tokens = sum(r.completion_tokens for r in ok)
    after = [s for s in run.rss if s.t_s >= config.warmup_s]

    # Every status the server reports, not a fixed list: a status added later
    # (a timeout, a shed request) must still be accounted for.
    statuses = label_values(run.metrics_before, "kzero_requests_total", "status") | label_values(
        run.metrics_after, "kzero_requests_total", "status"
    )
    server_requests = {
        s: _delta(run, "kzero_requests_total", status=s) for s in sorted(statuses | {"ok"})
    }
    counters = {
        "server_requests": server_requests,
        "server_generation_tokens": _delta(run, "kzero_generation_tokens_total"),
        "server_prompt_tokens": _delta(run, "kzero_prompt_tokens_total"),
        "client_requests": len(run.results),
        "client_ok": len(ok),
        "client_completion_tokens": tokens,
        "client_prompt_tokens": sum(r.prompt_tokens for r in ok),
    }
    mismatches = []
    if server_requests["ok"] != len(ok):
        mismatches.append(f"server ok {server_requests['ok']:.0f} != client ok {len(ok)}")
    if sum(server_requests.values()) != len(run.results):
        mismatches.append(
            f"server requests {sum(server_requests.values()):.0f} != client {len(run.results)}"
        )
    # Only when every request completed can the client's usage explain every token.
    if len(ok) == len(run.results):
        for kind, client_key in (
            ("generation", "client_completion_tokens"),
            ("prompt", "client_prompt_tokens"),
        ):
            server_tokens, client_tokens = counters[f"server_{kind}_tokens"], counters[client_key]
            if server_tokens != client_tokens:
                mismatches.append(
                    f"server {kind} tokens {server_tokens:.0f} != client {client_tokens}"
                )
    # None when the last scrape failed: the criterion then fails rather than reading 0.
    gauges = {
        name: value(run.metrics_after, name) if run.metrics_after else None for name in GAUGES
    }

    growth = memory["growth"]
    criteria = {
        "server_alive": (run.server_exit is None, f"exit code {run.server_exit}"),
        "errors": (not errors, ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) or "0"),
        "stuck": (
            outcomes["stuck"] == 0,
            f"{outcomes['stuck']} past {config.request_timeout_s:g} s",
        ),
        "rss_growth": (
            growth is not None and growth < RSS_GROWTH_LIMIT,
            "too few samples after warm-up"
            if growth is None
            else f"{growth:+.2%} (limit +{RSS_GROWTH_LIMIT:.0%})",
        ),
        "gauges": (
            all(reading == 0 for reading in gauges.values()),
            ", ".join(f"{k} {v}" for k, v in gauges.items())
            + f" after waiting {run.idle_wait_s:.1f} s",
        ),
        "counters": (not mismatches and run.metrics_after != {}, "; ".join(mismatches) or "match"),
    }
    return {
        "passed": all(passed for passed, _ in criteria.values()),
        "failed": [name for name, (passed, _) in criteria.items() if not passed],
        "criteria": {
            name: {"passed": passed, "detail": detail}
            for name, (passed, detail) in criteria.items()
        },
        "requests": {
            "total": len(run.results),
            "ok": len(ok),
            "stuck": outcomes["stuck"],
            "errors": errors,
        },
        "load_s": run.load_s,
        "loadavg_start_end": list(run.loadavg),
        "completion_tokens": tokens,
        "tokens_per_s": tokens / run.load_s if run.load_s else 0.0,
        "requests_per_s": len(ok) / run.load_s if run.load_s else 0.0,
        "latency_s": _percentiles([r.latency_s for r in ok]),
        "ttft_s": _percentiles([r.ttft_s for r in ok if r.ttft_s is not None]),
        "rss": {
            **memory,
            "first_bytes": run.rss[0].rss_bytes if run.rss else None,
            "idle_bytes": run.idle_rss.rss_bytes if run.idle_rss else None,
            # After warm-up, when every connection and worker thread should exist already.
            "threads_first_last": [after[0].threads, after[-1].threads] if after else None,
            "open_fds_first_last": [after[0].open_fds, after[-1].open_fds] if after else None,
        },
        "gauges": gauges,
        "counters": counters,
    }
