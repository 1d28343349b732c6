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
from predictor.backends.chat_template import ChatTemplate, ChatTemplateError
from predictor.backends.gguf_metadata import GGUFError, GGUFMetadata, read_gguf_metadata

GGUF_MAGIC = b"GGUF"
# Split GGUF files: llama.cpp opens the first shard and finds the rest.
_FIRST_SHARD = re.compile(r"-00001-of-(\d{5})\.gguf$")
# torch.load unpickles these, and unpickling can run arbitrary code.
PICKLE_WEIGHT_SUFFIXES = frozenset({".bin", ".pt", ".pth"})


class BadModelFileError(BackendLoadError):
    """The model file is corrupt, truncated or unsafe to load: startup must stop here.

    Raised before the port opens, so a bad file crash-loops with one readable
    line instead of hanging or crashing inside the engine.
    """


class ModelFormat(enum.StrEnum):
    GGUF = "gguf"
    HUGGINGFACE = "huggingface"


@dataclass(frozen=True)
class ModelLocation:
    """The file or directory an engine opens, and its format.

    For a GGUF file, also what checking it read: its metadata and its compiled
    chat template, handed on to the engine rather than read and compiled again.
    """

    path: Path
    format: ModelFormat
    metadata: GGUFMetadata | None = None
    chat_template: ChatTemplate | None = None


@dataclass(frozen=True)
class BackendChoice:
    kind: BackendKind
    reason: str


def _is_gguf_file(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            return stream.read(4) == GGUF_MAGIC
    except OSError as exc:
        raise BadModelFileError(f"cannot read {path}: {exc.strerror or exc}") from exc


def check_gguf_file(path: Path) -> ModelLocation:
    """Read the header and tensor table of ``path`` (and of its sibling shards, if split).

    Only headers are read, so this costs milliseconds even for a large model.
    A first shard ``name-00001-of-00003.gguf`` needs ``-00002-`` and ``-00003-``
    next to it, each complete, or llama.cpp would fail (or crash) half-way in.
    """
    shards = [path]
    match = _FIRST_SHARD.search(path.name)
    if match:
        stem = path.name[: match.start()]
        total = int(match.group(1))
        shards += [
            path.with_name(f"{stem}-{n:05d}-of-{total:05d}.gguf") for n in range(2, total + 1)
        ]
    location = ModelLocation(path, ModelFormat.GGUF)
    for shard in shards:
        if not shard.is_file():
            raise BadModelFileError(
                f"split GGUF model {path.name} is missing its shard {shard.name}"
            )
        try:
            metadata = read_gguf_metadata(shard)
        except GGUFError as exc:
            raise BadModelFileError(f"{shard} is not a usable GGUF model: {exc}") from exc
        except OSError as exc:
            raise BadModelFileError(f"cannot read {shard}: {exc.strerror or exc}") from exc
        if shard is not path:
            continue
        template = None
        if metadata.chat_template is not None:
            # Compiled here so a broken template stops startup, not the first chat.
            try:
                template = ChatTemplate(metadata.chat_template)
            except ChatTemplateError as exc:
                raise BadModelFileError(f"{path}: {exc}") from exc
        location = ModelLocation(path, ModelFormat.GGUF, metadata, template)
    return location


def check_safetensors_weights(root: Path) -> None:
    """Refuse a Hugging Face directory unless its weights are safetensors.

    Pickle weights (``.bin``, ``.pt``, ``.pth``) are refused outright: torch
    unpickles them on load, and unpickling executes whatever code the file holds.
    """
    if any(root.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in root.iterdir() if p.suffix in PICKLE_WEIGHT_SUFFIXES)
    if pickles:
        raise BadModelFileError(
            f"{root} holds only pickle weights ({', '.join(pickles)}); kzero refuses them "
            "because unpickling can execute arbitrary code: convert the model to safetensors"
        )
    raise BadModelFileError(f"{root} has no *.safetensors weights to load")


def locate_model(path: str | Path) -> ModelLocation:
    """Find what to open at ``path``: a GGUF file, a directory holding one, or a HF directory.

    KServe's storage initializer puts a model under ``/mnt/models``, so a directory
    with a single GGUF file (or the first shard of a split one) is accepted too.
    The model is checked here, before the port opens: a GGUF file's header and
    tensor table must be intact, a Hugging Face directory must hold safetensors.
    Raises ``BadModelFileError`` (a ``BackendLoadError``) with the reason.
    """
    path = Path(path)
    if not path.exists():
        raise BackendLoadError(f"model not found: {path}")
    if path.is_file():
        if path.suffix != ".gguf" and not _is_gguf_file(path):
            raise BackendLoadError(
                f"{path} is neither a GGUF file nor a Hugging Face model directory"
            )
        return check_gguf_file(path)
    if (path / "config.json").is_file():
        check_safetensors_weights(path)
        return ModelLocation(path, ModelFormat.HUGGINGFACE)
    ggufs = sorted(path.glob("*.gguf"))
    shards = [p for p in ggufs if _FIRST_SHARD.search(p.name)]
    if len(ggufs) == 1 or len(shards) == 1:
        chosen = ggufs[0] if len(ggufs) == 1 else shards[0]
        return check_gguf_file(chosen)
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
