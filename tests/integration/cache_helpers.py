"""Shared pieces of the model-cache fault tests: the CLI, the model, mounts."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from bench.harness.metrics import scrape, value
from bench.harness.process import PredictorProcess
from predictor.default_model import default_model_path

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SERVED_NAME = "SmolLM2-135M-Instruct.Q4_1"
KZERO = str(Path(sys.executable).with_name("kzero"))


def model_data() -> bytes:
    return default_model_path().read_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def kzero_cache(
    cache_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KZERO, "cache", "--cache-dir", str(cache_dir), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


def entry_files(cache_dir: Path) -> list[Path]:
    """Model files of complete and incomplete entries (markers excluded)."""
    return sorted(
        p
        for p in (cache_dir / "entries").rglob("*")
        if p.is_file() and not p.name.startswith(".kzero")
    )


def leftovers(cache_dir: Path) -> list[Path]:
    """Anything a fetch may leave: temporary directories and entries without a marker."""
    found = list((cache_dir / "tmp").iterdir()) if (cache_dir / "tmp").exists() else []
    entries = cache_dir / "entries"
    if entries.exists():
        found += [p for p in entries.iterdir() if not (p / ".kzero-entry.json").exists()]
    return found


def answers(url: str) -> str:
    body = {
        "model": SERVED_NAME,
        "prompt": "The capital of France is",
        "max_tokens": 4,
        "temperature": 0,
    }
    response = httpx.post(f"{url}/v1/completions", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["text"]


def lookups(url: str, result: str) -> float:
    return value(scrape(url), "kzero_cache_lookups_total", model_name=SERVED_NAME, result=result)


def assert_serves_a_cache_hit(server: PredictorProcess) -> None:
    """Waits for ``server``, checks it answers from a cache hit, and stops it."""
    try:
        server.wait_ready(SERVED_NAME)
        assert answers(server.url)
        assert lookups(server.url, "hit") == 1
    finally:
        server.stop()


def require_root_mounts() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs or a read-only bind mount")


@contextmanager
def mounted(*args: str, target: Path) -> Iterator[Path]:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *args, str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


@contextmanager
def read_only_view(source: Path, target: Path) -> Iterator[Path]:
    """``source`` bind-mounted read-only at ``target``, as a pod sees a read-only PVC."""
    with mounted("--bind", str(source), target=target):
        subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True)
        yield target
