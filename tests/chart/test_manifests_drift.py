"""Generated files match their sources.

manifests/ is what scripts/render-manifests.sh renders from the chart, and
charts/kzero/files/ holds exact copies of dashboards/ (scripts/sync-chart-files.sh).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .helm_cli import REPO, helm_binary


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_manifests_match_the_chart(tmp_path: Path) -> None:
    subprocess.run(
        [str(REPO / "scripts" / "render-manifests.sh"), str(tmp_path)],
        check=True,
        env={**os.environ, "HELM": helm_binary()},
        timeout=120,
    )
    fresh, committed = _tree(tmp_path), _tree(REPO / "manifests")
    assert fresh.keys() == committed.keys(), "manifests/ has missing or extra files"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, (
        f"manifests/ drifted from charts/kzero: run scripts/render-manifests.sh ({stale})"
    )


def test_chart_files_are_copies_of_dashboards() -> None:
    pairs = {
        "kzero-overview.json": REPO / "dashboards" / "kzero-overview.json",
        "kzero-rules.yaml": REPO / "dashboards" / "rules" / "kzero-rules.yaml",
    }
    files = REPO / "charts" / "kzero" / "files"
    assert sorted(p.name for p in files.iterdir()) == sorted(pairs)
    stale = [
        name for name, source in pairs.items() if (files / name).read_text() != source.read_text()
    ]
    assert not stale, (
        f"charts/kzero/files/ drifted from dashboards/: run scripts/sync-chart-files.sh ({stale})"
    )
