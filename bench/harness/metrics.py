"""A Prometheus ``/metrics`` page read into ``{(sample name, labels): value}``.

prometheus_client's own parser reads the text, so counters keep their
``_total``, histograms their ``_bucket``/``_sum``/``_count`` sample names.
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Sample = tuple[str, frozenset[tuple[str, str]]]
Samples = dict[Sample, float]


def parse(exposition: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def scrape(base_url: str, timeout_s: float = 10.0) -> Samples:
    return parse(httpx.get(f"{base_url}/metrics", timeout=timeout_s).text)


def family_names(base_url: str, prefix: str) -> set[str]:
    """Metric family names (prometheus_client names a counter's family without ``_total``)."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    return {f.name for f in text_string_to_metric_families(text) if f.name.startswith(prefix)}


def value(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= lbls)


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    """Every value ``label`` takes among the samples called ``name``."""
    return {dict(lbls)[label] for n, lbls in samples if n == name and label in dict(lbls)}
