from pathlib import Path

import pytest

from predictor.cpu_quota import (
    cgroup_cpu_limit,
    parse_cgroup_v1_quota,
    parse_cgroup_v2_cpu_max,
    usable_cpu_count,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("max 100000\n", None),
        ("200000 100000\n", 2.0),
        ("150000 100000", 1.5),
        ("50000 100000", 0.5),
    ],
)
def test_cgroup_v2_cpu_max(text: str, expected: float | None):
    assert parse_cgroup_v2_cpu_max(text) == expected


def test_cgroup_v1_unlimited_and_limited():
    assert parse_cgroup_v1_quota("-1", "100000") is None
    assert parse_cgroup_v1_quota("300000", "100000") == 3.0


def test_v2_file_wins_and_v1_is_the_fallback(tmp_path: Path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_cpu_limit(tmp_path) == 1.0
    (tmp_path / "cpu.max").write_text("400000 100000")
    assert cgroup_cpu_limit(tmp_path) == 4.0


def test_no_cgroup_files_means_no_limit(tmp_path: Path):
    assert cgroup_cpu_limit(tmp_path) is None


def test_quota_caps_threads_and_rounds_fractions_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(64)))
    (tmp_path / "cpu.max").write_text("150000 100000")
    assert usable_cpu_count(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("10000 100000")
    assert usable_cpu_count(tmp_path) == 1


def test_affinity_caps_a_larger_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    (tmp_path / "cpu.max").write_text("800000 100000")
    assert usable_cpu_count(tmp_path) == 2
