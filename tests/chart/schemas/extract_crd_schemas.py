"""Re-extracts the KServe CRD schemas kept beside this file.

Usage (from the repository root, with a clone or mirror of kserve/kserve):
    python tests/chart/schemas/extract_crd_schemas.py GIT_DIR COMMIT

Reads config/crd/full/serving.kserve.io_<plural>.yaml at COMMIT, keeps each
served version's openAPIV3Schema with every `description` removed (they are
most of the 2 MB InferenceService CRD and do not change what is valid), and
writes <kind>.<version>.json here. README.md records the source and commit.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
CRDS = {
    "inferenceservices": "InferenceService",
    "servingruntimes": "ServingRuntime",
    "clusterservingruntimes": "ClusterServingRuntime",
}


def without_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        # A property that is itself named "description" stays (it is a field).
        return {
            k: without_descriptions(v)
            for k, v in node.items()
            if not (k == "description" and isinstance(v, str))
        }
    if isinstance(node, list):
        return [without_descriptions(item) for item in node]
    return node


def main(git_dir: str, commit: str) -> None:
    for plural, kind in CRDS.items():
        path = f"config/crd/full/serving.kserve.io_{plural}.yaml"
        text = subprocess.run(
            ["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        crd = yaml.safe_load(text)
        for version in crd["spec"]["versions"]:
            if not version.get("served"):
                continue
            schema = without_descriptions(version["schema"]["openAPIV3Schema"])
            out = HERE / f"{kind}.{version['name']}.json"
            out.write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n")
            print(f"{path} {version['name']} -> {out.name}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
