"""The figures the cost model and the report take from ``kzero bench --json`` and
``kzero bench coldstart --json`` files."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

# Setup "b" is kzero over HTTP (bench/cli.py SETUP_NAMES).
KZERO_SETUP = "b"


class BenchFileError(ValueError):
    """The file is not a ``kzero bench [coldstart] --json`` result, or lacks kzero's figures."""


# The cold-start state the report bills: the model already on the cache volume.
# A miss happens once per model and volume; "hot" (in the page cache) is not
# what a pod scaled from zero on another node finds.
BILLED_COLD_START_STATE = "hit"


@dataclass(frozen=True)
class BenchFigures:
    path: Path
    date_utc: str
    usable_cpus: int
    cpu_model: str
    tokens_per_s: float  # kzero, one request at a time: median over rounds
    ttft_s: dict[int, list[float]]  # kzero's TTFT samples by concurrency
    e2e_s: dict[int, list[float]]  # kzero's batch wall times by concurrency
    tokens_per_s_by_concurrency: dict[int, float]


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise BenchFileError(f"cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise BenchFileError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None


def read_cold_start(path: Path) -> tuple[float, str]:
    """The median process-start-to-ready seconds of the cache-hit runs, and where it came from."""
    document = _read_json(path)
    if not isinstance(document, dict) or "runs" not in document:
        raise BenchFileError(f"{path}: not a 'kzero bench coldstart --json' file (no runs)")
    ready = [
        float(run["ready_s"])
        for run in document["runs"]
        if run.get("state") == BILLED_COLD_START_STATE
    ]
    if not ready:
        raise BenchFileError(f"{path}: no '{BILLED_COLD_START_STATE}' runs")
    date = document.get("facts", {}).get("date_utc", "unknown date")
    runs = ", ".join(f"{seconds:.2f}" for seconds in ready)
    return statistics.median(ready), (
        f"median ready time of {len(ready)} cache-hit starts in {path.name}, {date}: {runs} s"
    )


def read_bench(path: Path) -> BenchFigures:
    document = _read_json(path)
    if not isinstance(document, dict) or not {"facts", "samples"} <= document.keys():
        raise BenchFileError(f"{path}: not a 'kzero bench --json' file (no facts/samples)")
    samples = [s for s in document["samples"] if s.get("setup") == KZERO_SETUP]
    if not samples:
        raise BenchFileError(f"{path}: no samples of kzero (setup '{KZERO_SETUP}')")
    by_concurrency: dict[int, list[dict[str, object]]] = {}
    for sample in samples:
        by_concurrency.setdefault(int(sample["concurrency"]), []).append(sample)
    if 1 not in by_concurrency:
        raise BenchFileError(f"{path}: no kzero samples at concurrency 1")
    throughput = {
        conc: statistics.median(float(s["tokens_per_s"]) for s in batch)
        for conc, batch in by_concurrency.items()
    }
    ttft = {
        conc: [float(r["ttft_s"]) for s in batch for r in s["requests"] if r["ttft_s"] is not None]
        for conc, batch in by_concurrency.items()
    }
    e2e = {conc: [float(s["wall_s"]) for s in batch] for conc, batch in by_concurrency.items()}
    facts = document["facts"]
    return BenchFigures(
        path=path,
        date_utc=str(facts.get("date_utc", "unknown")),
        usable_cpus=int(facts.get("usable_cpus", 0)) or 1,
        cpu_model=str(facts.get("cpu_model", "unknown")),
        tokens_per_s=throughput[1],
        ttft_s=ttft,
        e2e_s=e2e,
        tokens_per_s_by_concurrency=throughput,
    )
