#!/usr/bin/env bash
# Prints an image's size and its largest parts: the image layers, and the
# biggest installed Python distributions and folders inside it.
#
# Usage: scripts/image/image-size.sh [TAG]   (default localhost/kzero-cpu:check)
set -euo pipefail
source "$(dirname "$0")/podman-env.sh"
TAG="${1:-localhost/kzero-cpu:check}"

podman image inspect --format '{{.Size}}' "$TAG" | awk -v tag="$TAG" '{printf "%s: %.0f MB\n", tag, $1 / 1e6}'
echo "layers:"
podman history --format '{{.Size}}\t{{.CreatedBy}}' "$TAG" | grep -v '^0 B' | cut -c1-100 | sed 's/^/  /'
echo "largest parts (MB):"
podman run --rm --entrypoint sh "$TAG" -c '
  site=$(python -c "import sysconfig; print(sysconfig.get_path(\"purelib\"))")
  du -sm /usr /opt/venv 2>/dev/null
  du -sm "$site"/* | sort -rn | head -n 12' | sed 's/^/  /'
