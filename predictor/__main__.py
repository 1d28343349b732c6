"""``python -m predictor``: the container entry point, same as ``kzero serve``."""

import sys

from predictor.cli import serve_main

sys.exit(serve_main(sys.argv[1:], prog="python -m predictor"))
