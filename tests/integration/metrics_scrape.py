"""Read a predictor's /metrics into {(sample name, labels): value}."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, frozenset[tuple[str, str]]]


def scrape(base_url: str) -> dict[Sample, float]:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def family_names(base_url: str, prefix: str) -> set[str]:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return {f.name for f in text_string_to_metric_families(text) if f.name.startswith(prefix)}


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= lbls)
