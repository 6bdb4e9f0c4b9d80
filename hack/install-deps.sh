#!/usr/bin/env bash
# Installs the Debian packages the local cluster needs. CI runs this as root on a
# fresh machine; packages already present are skipped so a warm run is instant.
# Nothing is started here: the cluster scripts start their own daemons.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

packages=(
  containerd runc containernetworking-plugins # container runtime + CNI plugins (/usr/lib/cni)
  iptables conntrack iproute2 kmod            # kube-proxy and the pod bridge
  buildah debootstrap                         # images without a registry
  openssl                                     # cluster PKI
  gcc libc6-dev                               # the static pause binary
  ca-certificates curl procps psmisc
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "${p}" 2>/dev/null | grep -q 'install ok installed' || missing+=("${p}")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  log "cluster dependencies already installed"
  exit 0
fi

sudo=()
[[ "$(id -u)" == 0 ]] || sudo=(sudo)
log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
# --no-install-recommends keeps buildah from pulling in podman's whole stack.
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
log "cluster dependencies installed"
