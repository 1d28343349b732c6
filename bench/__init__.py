"""kzero's benchmarks: ``kzero bench`` (kzero against raw llama-cpp-python,
``llama_cpp.server`` and llama.cpp's ``llama-server``), ``kzero bench coldstart``
and ``kzero bench soak``.

Not part of the product: the package sits beside ``predictor/`` in a source
checkout and is left out of the wheel and the image. The setups of a comparison
run side by side in one process, interleaved round by round, so that drift in
the machine's load hits them all alike and the ratios stay meaningful on a
shared, noisy machine. ``bench.harness`` (server processes, the SSE client,
``/metrics`` scraping) is shared with the test suite.
"""
