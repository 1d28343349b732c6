"""Self-hosted cost (always on, scale to zero), managed cost, break-even rates, prices."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autoscaling.cost import (
    SelfHosted,
    aws_lambda,
    break_even_rate,
    cloud_run,
    compare,
    lambda_memory_for_vcpus,
)
from autoscaling.cost_cli import cost_main
from autoscaling.kpa import KpaConfig
from autoscaling.prices import PriceFileError, load_prices

PRICES = load_prices()
NODE = PRICES.node("aws_c7i_xlarge")


def _pod(tokens_per_s: float = 50.0, cold_start_s: float = 5.0) -> SelfHosted:
    return SelfHosted(NODE, 2, tokens_per_s, cold_start_s, KpaConfig().idle_before_zero_s)


def test_pod_pays_its_share_of_the_node() -> None:
    assert _pod().pod_rate_per_s == pytest.approx(0.1785 / 3600 / 2)


def test_always_on_adds_a_pod_when_load_passes_target_utilization() -> None:
    pod = _pod(tokens_per_s=50.0)  # 500 tokens: 10 s of one pod per request
    assert pod.pods_needed(0.07) == 1  # 70% busy: exactly at the target
    assert pod.pods_needed(0.0701) == 2
    assert pod.always_on_cost_per_s(0.0001) == pytest.approx(pod.pod_rate_per_s)


def test_scale_to_zero_at_low_traffic_pays_service_idle_tail_and_cold_start() -> None:
    pod = _pod()
    rate = 1e-6  # gaps far longer than the idle period: every request is a cold start
    per_request = pod.scale_to_zero_cost_per_s(rate) / rate
    expected = pod.pod_rate_per_s * (10.0 + KpaConfig().idle_before_zero_s + 5.0)
    assert per_request == pytest.approx(expected, rel=1e-3)


def test_scale_to_zero_never_costs_more_than_always_on_and_meets_it_under_load() -> None:
    pod = _pod()
    for rate in (1e-5, 1e-3, 0.01, 0.05, 0.5, 5.0):
        assert pod.scale_to_zero_cost_per_s(rate) <= pod.always_on_cost_per_s(rate) + 1e-15
    assert pod.scale_to_zero_cost_per_s(0.5) == pod.always_on_cost_per_s(0.5)


def test_break_even_of_always_on_is_pod_price_over_managed_request_price() -> None:
    pod = _pod()
    offer = aws_lambda(PRICES, 3.46, 50.0)
    found = break_even_rate(pod.always_on_cost_per_s, offer.cost_per_s)
    assert found == pytest.approx(pod.pod_rate_per_s / offer.cost_per_request(), rel=1e-6)


def test_break_even_rate_grows_with_pod_speed_when_managed_runs_as_fast() -> None:
    # Both sides bill engine time at the same tokens/s, so the break-even busy
    # fraction is fixed and the break-even request rate scales with tokens/s.
    def rate(tokens_per_s: float) -> float | None:
        return break_even_rate(
            _pod(tokens_per_s).always_on_cost_per_s,
            aws_lambda(PRICES, 3.46, tokens_per_s).cost_per_s,
        )

    slow, fast = rate(20.0), rate(40.0)
    assert slow is not None and fast is not None
    assert fast / slow == pytest.approx(2.0, rel=0.01)


def test_break_even_is_none_when_self_hosted_never_gets_cheaper() -> None:
    assert break_even_rate(lambda r: 1.0 + r, lambda r: r) is None


def test_lambda_sizes_cpu_by_memory() -> None:
    assert lambda_memory_for_vcpus(PRICES, 1) == pytest.approx(1769 / 1024, abs=0.01)
    assert aws_lambda(PRICES, 2.0, 10.0, arm=True).rate_per_s == pytest.approx(2 * 0.0000133334)


def test_comparison_always_has_always_on_scale_to_zero_and_managed_rows() -> None:
    offers = [aws_lambda(PRICES, 3.46, 50.0), cloud_run(PRICES, 2, 2, 50.0)]
    rows = compare(_pod(), offers, rate_rps=0.01)
    labels = [row.label for row in rows]
    assert labels[0].startswith("self-hosted, always on")
    assert labels[1].startswith("self-hosted, scale to zero")
    assert labels[2:] == [f"managed: {offer.name}" for offer in offers]
    lambda_row = rows[2]
    assert lambda_row.per_million_tokens == pytest.approx(offers[0].cost_per_request() / 500 * 1e6)
    assert set(rows[0].break_even_rps) == {offer.name for offer in offers}


def test_price_entry_without_a_source_is_refused(tmp_path: Path) -> None:
    bundled = Path(__file__).parents[2] / "autoscaling" / "prices.yaml"
    text = bundled.read_text().replace(
        "    source: https://aws.amazon.com/lambda/pricing/\n", "", 1
    )
    broken = tmp_path / "prices.yaml"
    broken.write_text(text)
    with pytest.raises(PriceFileError, match=r"aws_lambda\.x86_gb_second: missing source"):
        load_prices(broken)


def test_every_bundled_price_has_a_source_and_a_date() -> None:
    assert PRICES.as_of
    for section in (PRICES.lambda_, PRICES.cloud_run):
        assert all(price.source.startswith("https://") for price in section.values())
    assert all(node.source.startswith("https://") for node in PRICES.nodes.values())


def test_kzero_cost_without_arguments_prints_the_seed_scenario(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cost_main([]) == 0
    out = capsys.readouterr().out
    assert "0.00674" in out and "0.00690" in out
    assert "always on (minReplicas 1)" in out and "scale to zero (minReplicas 0)" in out
    assert "not the published $0.000102/s" in out
    assert re.search(r"always on \(minReplicas 1\) vs AWS Lambda \(6 GB, seed\): [0-9.]+/s", out)


def test_kzero_cost_with_a_bench_file_needs_a_cold_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(
        '{"facts": {"usable_cpus": 2}, "samples": [{"setup": "b", "concurrency": 1, '
        '"round_index": 0, "wall_s": 2.0, "tokens_per_s": 64.0, "requests": '
        '[{"ttft_s": 0.1, "tokens": 128}]}]}'
    )
    assert cost_main(["--bench", str(bench)]) == 2
    assert "--cold_start_s is required" in capsys.readouterr().err
    assert cost_main(["--bench", str(bench), "--cold_start_s", "3"]) == 0
    assert "64.00 tok/s per pod" in capsys.readouterr().out


def test_kzero_cost_reports_an_unreadable_bench_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cost_main(["--bench", str(tmp_path / "missing.json"), "--cold_start_s", "1"]) == 2
    assert "cannot read" in capsys.readouterr().err
