"""Write the dashboards as JSON, or with ``--check`` fail when the committed JSON drifted.

Run from anywhere: ``python dashboards/generate.py [--check]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import overview
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from autoscaling.prices import load_prices

HERE = Path(__file__).resolve().parent
OUTPUTS = {HERE / "kzero-overview.json": overview.build}


def render() -> dict[Path, str]:
    prices = load_prices()
    return {
        path: json.dumps(build(prices), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
        for path, build in OUTPUTS.items()
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the JSON is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in render().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.write_text(text)
    if stale:
        names = ", ".join(str(p.relative_to(HERE.parent)) for p in stale)
        print(f"out of date: {names}; run python dashboards/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
