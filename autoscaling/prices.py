"""The dated price list the cost model uses (``prices.yaml``), loaded and validated.

A price without a source cannot be checked, so loading fails on an entry that
lacks one rather than carrying an unexplained number into a cost table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

SECTIONS = ("aws_lambda", "google_cloud_run", "self_hosted_nodes")


class PriceFileError(ValueError):
    """The price file is missing an entry, a source, or holds a non-positive price."""


@dataclass(frozen=True)
class Price:
    value: float
    unit: str
    source: str


@dataclass(frozen=True)
class NodePrice:
    name: str
    per_hour: float
    vcpus: int
    memory_gib: float
    gpus: int
    unit: str
    source: str


@dataclass(frozen=True)
class Prices:
    as_of: str
    currency: str
    lambda_: dict[str, Price]
    cloud_run: dict[str, Price]
    nodes: dict[str, NodePrice]

    def node(self, name: str) -> NodePrice:
        try:
            return self.nodes[name]
        except KeyError:
            known = ", ".join(sorted(self.nodes))
            raise PriceFileError(f"unknown node '{name}'; the price file has: {known}") from None


def _price(section: str, name: str, entry: object) -> Price:
    if not isinstance(entry, dict):
        raise PriceFileError(f"{section}.{name}: expected a mapping with price, unit, source")
    missing = [key for key in ("price", "unit", "source") if not entry.get(key)]
    if missing:
        raise PriceFileError(f"{section}.{name}: missing {', '.join(missing)}")
    value = entry["price"]
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise PriceFileError(f"{section}.{name}: price must be a positive number, got {value!r}")
    return Price(float(value), str(entry["unit"]), str(entry["source"]))


def parse_prices(document: object) -> Prices:
    if not isinstance(document, dict):
        raise PriceFileError("price file: expected a mapping at the top level")
    for key in ("as_of", "currency", *SECTIONS):
        if key not in document:
            raise PriceFileError(f"price file: missing '{key}'")
    sections: dict[str, dict[str, Price]] = {}
    for section in SECTIONS:
        body = document[section]
        if not isinstance(body, dict) or not body:
            raise PriceFileError(f"{section}: expected a non-empty mapping")
        sections[section] = {name: _price(section, name, entry) for name, entry in body.items()}
    nodes = {}
    for name, price in sections["self_hosted_nodes"].items():
        raw = document["self_hosted_nodes"][name]
        if not isinstance(raw.get("vcpus"), int) or raw["vcpus"] < 1:
            raise PriceFileError(f"self_hosted_nodes.{name}: vcpus must be a positive integer")
        nodes[name] = NodePrice(
            name=name,
            per_hour=price.value,
            vcpus=raw["vcpus"],
            memory_gib=float(raw.get("memory_gib", 0)),
            gpus=int(raw.get("gpus", 0)),
            unit=price.unit,
            source=price.source,
        )
    return Prices(
        as_of=str(document["as_of"]),
        currency=str(document["currency"]),
        lambda_=sections["aws_lambda"],
        cloud_run=sections["google_cloud_run"],
        nodes=nodes,
    )


def load_prices(path: Path | None = None) -> Prices:
    """The bundled ``prices.yaml``, or ``path`` when given."""
    if path is None:
        text = resources.files("autoscaling").joinpath("prices.yaml").read_text()
        where = "autoscaling/prices.yaml"
    else:
        try:
            text = path.read_text()
        except OSError as exc:
            raise PriceFileError(f"cannot read price file {path}: {exc.strerror}") from None
        where = str(path)
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PriceFileError(f"{where}: not valid YAML: {exc}") from None
    try:
        return parse_prices(document)
    except PriceFileError as exc:
        raise PriceFileError(f"{where}: {exc}") from None
