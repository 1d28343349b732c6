"""The e2e harness itself, without a cluster: why it skips, and how it reads /metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from . import cluster
from .pods import _dechunk, sample

METRICS = """\
# HELP kzero_requests_total Generation requests by outcome.
# TYPE kzero_requests_total counter
kzero_requests_total{backend="llamacpp",model_name="smollm2",status="ok"} 3.0
kzero_requests_total{backend="llamacpp",model_name="smollm2",status="error"} 1.0
kzero_requests_total{backend="llamacpp",model_name="other",status="ok"} 7.0
kzero_cache_download_bytes_total{backend="llamacpp",model_name="smollm2"} 0.0
"""


def test_sample_sums_matching_series_and_reads_absent_as_zero() -> None:
    assert sample(METRICS, "kzero_requests_total", model_name="smollm2") == 4.0
    assert sample(METRICS, "kzero_requests_total", model_name="smollm2", status="ok") == 3.0
    assert sample(METRICS, "kzero_requests_total") == 11.0
    assert sample(METRICS, "kzero_cache_lookups_total", model_name="smollm2") == 0.0


def test_first_api_key_skips_comments_and_blank_lines_like_the_predictor() -> None:
    assert cluster.first_api_key("# e2e key\n\n  kz-abc  \nkz-def\n") == "kz-abc"
    with pytest.raises(AssertionError):
        cluster.first_api_key("# only a comment\n")


def test_dechunk_reassembles_a_chunked_body() -> None:
    assert _dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n") == b"hello world"


def _kubeconfig(tmp_path: Path, context: str, server: str) -> Path:
    path = tmp_path / "config"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": context, "context": {"cluster": "c", "user": "u"}}],
                "current-context": context,
            }
        )
    )
    return path


def test_skip_reason_names_a_missing_kind_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(_kubeconfig(tmp_path, "prod", "https://127.0.0.1:1")))
    reason = cluster.connect()
    assert isinstance(reason, str) and f"no kube context '{cluster.CONTEXT}'" in reason


def test_skip_reason_says_the_kind_cluster_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    path = _kubeconfig(tmp_path, cluster.CONTEXT, "https://127.0.0.1:1")
    monkeypatch.setenv("KUBECONFIG", str(path))
    reason = cluster.connect()
    assert isinstance(reason, str) and "is not reachable" in reason
