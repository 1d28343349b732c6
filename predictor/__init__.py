"""kzero predictor: a KServe custom model server for LLMs (llama.cpp on CPU, vLLM on GPU)."""

__version__ = "0.1.0"
