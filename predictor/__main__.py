"""``python -m predictor``: the container entry point, same as ``kzero serve``."""

import sys

from predictor.start_up import begin_start_up

# Before the imports below, which are most of a cold start (predictor/start_up.py).
begin_start_up()

from predictor.cli import serve_main  # noqa: E402

sys.exit(serve_main(sys.argv[1:], prog="python -m predictor"))
