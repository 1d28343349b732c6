"""The cache-warm Job runs the storage variant of the CPU image (s3://, gs://, hf://), the
predictors the slim CPU image that a node pulls on every scale from zero (docs/image.md)."""

from __future__ import annotations

from pathlib import Path

import yaml

from .helm_cli import CHART, run_helm, template


def warm_container(objects: list[dict]) -> dict:
    (job,) = [o for o in objects if o["kind"] == "Job"]
    return job["spec"]["template"]["spec"]["containers"][0]


def runtime_images(objects: list[dict]) -> set[str]:
    runtimes = [o for o in objects if o["kind"] == "ClusterServingRuntime"]
    return {c["image"] for r in runtimes for c in r["spec"]["containers"]}


def test_the_warm_job_runs_the_storage_variant_and_predictors_the_slim_image():
    objects = template()
    assert warm_container(objects)["image"] == "ghcr.io/kzero/kzero-cpu:0.1.0-storage"
    assert "ghcr.io/kzero/kzero-cpu:0.1.0" in runtime_images(objects)
    assert "ghcr.io/kzero/kzero-cpu:0.1.0-storage" not in runtime_images(objects)


def test_the_warm_image_can_be_set(tmp_path: Path):
    values = tmp_path / "values.yaml"
    values.write_text(
        yaml.safe_dump(
            {"image": {"warm": {"repository": "reg/w", "tag": "1", "pullPolicy": "Never"}}}
        )
    )
    container = warm_container(template("-f", str(values)))
    assert (container["image"], container["imagePullPolicy"]) == ("reg/w:1", "Never")


def test_a_warm_image_without_a_tag_is_refused():
    result = run_helm("template", "kzero", str(CHART), "--set", "image.warm.tag=")
    assert result.returncode != 0
    assert "tag" in result.stderr


def test_the_kind_install_points_the_warm_job_at_the_loaded_image():
    script = (CHART.parent.parent / "scripts" / "kind" / "install-kzero.sh").read_text()
    assert "image.warm.repository=$repository" in script and "image.warm.pullPolicy=Never" in script
