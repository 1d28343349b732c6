"""``kzero bench``: kzero against raw llama-cpp-python and ``llama_cpp.server``.

The three setups run side by side in one process, interleaved round by round,
so that drift in the machine's load hits all three alike and the ratios stay
meaningful on a shared, noisy machine.
"""
