# Sourced by the image scripts: makes sure podman and its helpers are installed
# and points podman at the repository's containers.conf.
#
# On a fresh CI machine (root, Debian) the tools are apt-installed here; a
# developer machine without them gets one line saying what is missing.
# shellcheck shell=bash

# iptables: netavark, podman's network backend, sets up the bridge with it.
IMAGE_TOOLS=(podman buildah debootstrap runc iptables)
IMAGE_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export CONTAINERS_CONF="$IMAGE_SCRIPTS/containers.conf"

# Prints what is missing (nothing when all is there).
missing_image_tools() {
  local tool missing=()
  for tool in "${IMAGE_TOOLS[@]}"; do
    command -v "$tool" >/dev/null || [[ -x "/usr/sbin/$tool" ]] || missing+=("$tool")
  done
  echo "${missing[*]}"
}

# Installs the missing tools with apt-get when running as root on Debian;
# returns 1 with the reason on stderr when it cannot.
ensure_image_tools() {
  local missing
  missing="$(missing_image_tools)"
  [[ -z "$missing" ]] && return 0
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "needs $missing: install them (apt-get install -y $missing) as root" >&2
    return 1
  fi
  echo "image: apt-get install $missing" >&2
  apt-get update -qq
  # With recommends: netavark, conmon's helpers and fuse-overlayfs come that way.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${IMAGE_TOOLS[@]}" >/dev/null
}
