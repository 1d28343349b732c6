"""Decide which engine serves a model, and say why.

``auto`` picks vLLM when a CUDA GPU is visible, ``vllm`` imports and the model
is a Hugging Face directory; it picks llama.cpp for GGUF files. An explicit
choice that cannot serve the model fails at startup with one clear line.
Neither check imports torch or vllm: startup on a CPU node stays fast.
"""

from __future__ import annotations

import enum
import importlib.util
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from predictor.backends.base import BackendKind, BackendLoadError

GGUF_MAGIC = b"GGUF"
# Split GGUF files: llama.cpp opens the first shard and finds the rest.
_FIRST_SHARD = re.compile(r"-00001-of-\d{5}\.gguf$")


class ModelFormat(enum.StrEnum):
    GGUF = "gguf"
    HUGGINGFACE = "huggingface"


@dataclass(frozen=True)
class ModelLocation:
    """The file or directory an engine opens, and its format."""

    path: Path
    format: ModelFormat


@dataclass(frozen=True)
class BackendChoice:
    kind: BackendKind
    reason: str


def _is_gguf_file(path: Path) -> bool:
    with path.open("rb") as stream:
        return stream.read(4) == GGUF_MAGIC


def locate_model(path: str | Path) -> ModelLocation:
    """Find what to open at ``path``: a GGUF file, a directory holding one, or a HF directory.

    KServe's storage initializer puts a model under ``/mnt/models``, so a directory
    with a single GGUF file (or the first shard of a split one) is accepted too.
    """
    path = Path(path)
    if not path.exists():
        raise BackendLoadError(f"model not found: {path}")
    if path.is_file():
        if _is_gguf_file(path):
            return ModelLocation(path, ModelFormat.GGUF)
        raise BackendLoadError(f"{path} is neither a GGUF file nor a Hugging Face model directory")
    if (path / "config.json").is_file():
        return ModelLocation(path, ModelFormat.HUGGINGFACE)
    ggufs = sorted(path.glob("*.gguf"))
    shards = [p for p in ggufs if _FIRST_SHARD.search(p.name)]
    if len(ggufs) == 1 or len(shards) == 1:
        chosen = ggufs[0] if len(ggufs) == 1 else shards[0]
        if _is_gguf_file(chosen):
            return ModelLocation(chosen, ModelFormat.GGUF)
        raise BackendLoadError(f"{chosen} has a .gguf name but is not a GGUF file")
    if ggufs:
        names = ", ".join(p.name for p in ggufs)
        raise BackendLoadError(f"{path} holds several GGUF files ({names}); pass one with --model")
    raise BackendLoadError(
        f"{path} has no config.json (Hugging Face) and no .gguf file: nothing to serve"
    )


def cuda_gpu_visible() -> bool:
    """True when an NVIDIA GPU is present and not hidden by CUDA_VISIBLE_DEVICES."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    return any(Path("/dev").glob("nvidia[0-9]*"))


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def choose_backend(
    requested: BackendKind,
    model: ModelLocation,
    *,
    gpu_visible: Callable[[], bool] = cuda_gpu_visible,
    vllm_available: Callable[[], bool] = vllm_installed,
) -> BackendChoice:
    """The engine for ``model``; raises ``BackendLoadError`` when none can serve it."""
    if requested is BackendKind.LLAMACPP:
        if model.format is not ModelFormat.GGUF:
            raise BackendLoadError(
                f"--backend llamacpp serves GGUF files, but {model.path} is a Hugging Face "
                "directory: convert it to GGUF or use --backend vllm on a GPU"
            )
        return BackendChoice(BackendKind.LLAMACPP, "requested with --backend llamacpp")
    if requested is BackendKind.VLLM:
        problem = _vllm_problem(model, gpu_visible, vllm_available)
        if problem:
            raise BackendLoadError(f"--backend vllm cannot serve {model.path}: {problem}")
        return BackendChoice(BackendKind.VLLM, "requested with --backend vllm")
    if model.format is ModelFormat.GGUF:
        return BackendChoice(BackendKind.LLAMACPP, "auto: the model is a GGUF file")
    problem = _vllm_problem(model, gpu_visible, vllm_available)
    if problem:
        raise BackendLoadError(
            f"auto: {model.path} is a Hugging Face directory, which needs vLLM, but {problem}; "
            "serve a GGUF file on CPU instead"
        )
    return BackendChoice(
        BackendKind.VLLM, "auto: Hugging Face model, CUDA GPU visible and vllm installed"
    )


def _vllm_problem(
    model: ModelLocation, gpu_visible: Callable[[], bool], vllm_available: Callable[[], bool]
) -> str | None:
    if model.format is not ModelFormat.HUGGINGFACE:
        return "vLLM serves Hugging Face directories here, not GGUF files"
    if not vllm_available():
        return "the vllm package is not installed (pip install 'kzero[gpu]')"
    if not gpu_visible():
        return "no CUDA GPU is visible"
    return None
