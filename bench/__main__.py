"""``python -m bench``: the same as ``kzero bench``."""

import sys

from bench.cli import bench_main

sys.exit(bench_main(sys.argv[1:]))
