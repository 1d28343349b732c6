"""Fake ``vllm.engine.arg_utils``: the engine arguments kzero sets.

A dataclass like the real one, so a misspelt keyword fails with ``TypeError``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class AsyncEngineArgs:
    model: str = "facebook/opt-125m"
    served_model_name: str | list[str] | None = None
    trust_remote_code: bool = False
    load_format: str = "auto"
    dtype: str = "auto"
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.90
    enforce_eager: bool = False
    max_num_seqs: int | None = None
    # None as in vLLM: the V1 engine then turns prefix caching on for generating
    # models (EngineArgs._set_default_args) and the CUDA platform picks 16-token
    # blocks (vllm/platforms/cuda.py), both at v0.11.0.
    enable_prefix_caching: bool | None = None
    block_size: int | None = None
