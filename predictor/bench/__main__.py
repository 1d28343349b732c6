"""``python -m predictor.bench``: the same as ``kzero bench``."""

import sys

from predictor.bench.cli import bench_main

sys.exit(bench_main(sys.argv[1:]))
