"""accelerator: an explicit choice wins; auto never guesses silently.

`auto` depends on Helm's `lookup`, which sees no cluster under `helm template`,
`--dry-run=client` and GitOps renderers, and sees no GPU while a GPU pool is
scaled to zero. So a gpuUri-only model under auto fails rendering without
cluster access, and NOTES.txt states what auto chose and why.

Not covered here: the branches that need a cluster answering `lookup` (GPU
nodes found, a running InferenceService's device kept); no cluster is
reachable from these tests.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from .helm_cli import CHART, notes, run_helm, template


def values_file(tmp_path: Path, *models: dict) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump({"models": list(models)}))
    return str(path)


def device(objects: list[dict], name: str) -> str:
    (service,) = [
        o for o in objects if o["kind"] == "InferenceService" and o["metadata"]["name"] == name
    ]
    return service["metadata"]["labels"]["kzero.dev/accelerator"]


def test_gpu_uri_only_model_under_auto_fails_without_cluster_access(tmp_path: Path) -> None:
    values = values_file(tmp_path, {"name": "big", "gpuUri": "hf://org/big"})
    result = run_helm("template", "kzero", str(CHART), "-f", values)
    assert result.returncode != 0
    assert "models[big]: accelerator auto cannot tell whether the cluster has GPUs" in result.stderr
    assert "set accelerator: gpu" in result.stderr


def test_an_explicit_choice_wins(tmp_path: Path) -> None:
    values = values_file(
        tmp_path,
        {"name": "big", "gpuUri": "hf://org/big", "accelerator": "gpu"},
        {"name": "both", "uri": "file:///m.gguf", "gpuUri": "hf://org/m", "accelerator": "gpu"},
    )
    objects = template("-f", values, "--set", "cache.accessMode=ReadWriteMany")
    assert device(objects, "big") == "gpu" and device(objects, "both") == "gpu"
    text = notes("-f", values, "--set", "cache.accessMode=ReadWriteMany")
    assert "big on gpu (hf://org/big)\n    accelerator is gpu in the values" in text


def test_auto_with_a_gguf_says_in_notes_that_it_could_not_look(tmp_path: Path) -> None:
    values = values_file(tmp_path, {"name": "m", "uri": "file:///m.gguf", "gpuUri": "hf://org/m"})
    assert device(template("-f", values), "m") == "cpu"
    text = notes("-f", values)
    assert "m on cpu (file:///m.gguf)\n    auto could not list nodes (no cluster access" in text
    assert "set accelerator gpu to serve the gpuUri" in text


def test_default_values_notes_say_why_the_model_is_on_cpu() -> None:
    assert "smollm2 on cpu" in notes() and "auto could not list nodes" in notes()
