"""``kzero report``: a markdown report with three PNG charts from a bench file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autoscaling.report_cli import report_main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _bench_file(tmp_path: Path, tokens_per_s: float) -> Path:
    def sample(concurrency: int, round_index: int) -> dict[str, object]:
        wall = 128 * concurrency / tokens_per_s
        return {
            "setup": "b",
            "concurrency": concurrency,
            "round_index": round_index,
            "wall_s": wall,
            "tokens_per_s": tokens_per_s,
            "requests": [
                {"ttft_s": 0.1 + 0.01 * round_index + 2.0 * i, "tokens": 128}
                for i in range(concurrency)
            ],
        }

    path = tmp_path / "bench.json"
    samples = [sample(c, r) for c in (1, 4) for r in range(5)]
    samples.append({**sample(1, 0), "setup": "a", "tokens_per_s": 1.0})  # not kzero: ignored
    path.write_text(
        json.dumps(
            {
                "facts": {"date_utc": "2026-11-22T00:00:00+00:00", "usable_cpus": 2},
                "samples": samples,
            }
        )
    )
    return path


def test_report_writes_markdown_and_three_charts(tmp_path: Path) -> None:
    out = tmp_path / "report"
    bench = _bench_file(tmp_path, tokens_per_s=40.0)
    code = report_main(
        ["--bench", str(bench), "--cold_start_s", "4", "--out", str(out), "--no_progress"]
    )
    assert code == 0
    text = (out / "README.md").read_text()
    for chart in ("cost.png", "latency.png", "pods.png"):
        assert f"]({chart})" in text
        assert (out / chart).read_bytes().startswith(PNG_SIGNATURE)
    assert "40.00 tokens/s (kzero at concurrency 1" in text
    assert "Cold start: 4.00 s (--cold_start_s)" in text
    assert "always on vs AWS Lambda" in text and "scale to zero vs Cloud Run" in text
    assert "| measured: bench, warm, 4 at once | 3.12 s |" in text  # (2.14 + 4.10) / 2
    assert "scale to zero |" in text and "always on |" in text


def test_report_needs_an_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main(["--cold_start_s", "1"]) == 2
    assert "give --bench FILE and/or --prometheus URL" in capsys.readouterr().err


def test_report_without_a_cold_start_says_where_to_get_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert report_main(["--bench", str(_bench_file(tmp_path, 40.0))]) == 2
    assert "no cold start" in capsys.readouterr().err


def test_report_names_an_unreachable_prometheus(capsys: pytest.CaptureFixture[str]) -> None:
    assert report_main(["--prometheus", "http://127.0.0.1:9", "--cold_start_s", "1"]) == 2
    assert "cannot query http://127.0.0.1:9" in capsys.readouterr().err


def _coldstart_file(tmp_path: Path) -> Path:
    path = tmp_path / "coldstart.json"
    runs = [
        {"state": state, "ready_s": ready, "first_token_s": ready + 0.1, "phases": {}}
        for state, ready in (("miss", 9.0), ("hit", 3.0), ("hot", 1.0), ("hit", 2.0), ("hit", 2.5))
    ]
    path.write_text(json.dumps({"facts": {"date_utc": "2026-11-29T00:00:00+00:00"}, "runs": runs}))
    return path


def test_report_bills_the_median_cache_hit_cold_start_and_the_benchs_batching(
    tmp_path: Path,
) -> None:
    out = tmp_path / "report"
    args = [
        "--bench",
        str(_bench_file(tmp_path, 40.0)),
        "--coldstart",
        str(_coldstart_file(tmp_path)),
    ]
    assert report_main([*args, "--out", str(out), "--no_progress"]) == 0
    text = (out / "README.md").read_text()
    assert "Cold start: 2.50 s (median ready time of 3 cache-hit starts in coldstart.json" in text
    assert "decodes up to 4 requests together (aggregate 40.0 tok/s at 4" in text


def test_a_tokens_per_s_override_drops_the_benchs_batched_figures(tmp_path: Path) -> None:
    out = tmp_path / "report"
    bench = str(_bench_file(tmp_path, 40.0))
    args = ["--bench", bench, "--cold_start_s", "2", "--tokens_per_s", "20", "--parallel", "4"]
    assert report_main([*args, "--out", str(out), "--no_progress"]) == 0
    assert "decodes up to 4 requests together at no gain" in (out / "README.md").read_text()


def test_a_coldstart_file_without_cache_hits_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "coldstart.json"
    path.write_text(json.dumps({"runs": [{"state": "miss", "ready_s": 9.0}]}))
    args = ["--bench", str(_bench_file(tmp_path, 40.0)), "--coldstart", str(path)]
    assert report_main(args) == 2
    assert "no 'hit' runs" in capsys.readouterr().err
