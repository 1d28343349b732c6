"""A fake of the few vLLM names kzero uses, for tests on machines without a GPU.

Same module paths as real vLLM (>= 0.11, the v1 engine), so
``predictor.backends.vllm`` runs unchanged against it. Put ``tests/fakes`` on
``sys.path`` only inside a fixture; never install this.
"""

__version__ = "0.0.0+fake"
