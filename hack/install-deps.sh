#!/usr/bin/env bash
# Installs Debian packages by set. CI runs this as root on a fresh machine; packages already
# present are skipped so a warm run is instant. Nothing is started here: the cluster scripts
# start their own daemons, and the tests start the servers they use.
#   install-deps.sh [cluster]   what the local cluster and the image builds need
#   install-deps.sh test        tools the test suite runs besides Python (`make test` asks)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

set_name="${1:-cluster}"
case "${set_name}" in
  cluster)
    packages=(
      containerd runc containernetworking-plugins # container runtime + CNI plugins (/usr/lib/cni)
      iptables conntrack iproute2 kmod            # kube-proxy and the pod bridge
      buildah debootstrap                         # images without a registry
      openssl                                     # cluster PKI
      gcc libc6-dev                               # the static pause binary
      ca-certificates curl procps psmisc
    )
    ;;
  test)
    packages=(
      lua5.1       # Argo CD runs health checks in gopher-lua (Lua 5.1); the tests run ours in a real one
      # Argo CD's cache, for the tests that run its components. Only the binary is wanted: a
      # test starts its own on a free port (where no policy-rc.d forbids it, Debian's package
      # also starts one on 127.0.0.1:6379).
      redis-server
      git          # Argo CD's repo server clones what it syncs
      # sql sources: tests/plugins/postgres.py runs initdb and postgres from it on a free port.
      # Debian's package would also create and start a cluster on 5432: told not to below.
      postgresql
    )
    ;;
  *) die "usage: install-deps.sh [cluster|test]" ;;
esac

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "${p}" 2>/dev/null | grep -q 'install ok installed' || missing+=("${p}")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  log "${set_name} dependencies already installed"
  exit 0
fi

sudo=()
[[ "$(id -u)" == 0 ]] || sudo=(sudo)
log "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
if [[ " ${missing[*]} " == *" postgresql "* ]]; then
  # Read by the package's postinst (pg_createcluster's settings): no main cluster, so nothing
  # to start, now or at boot.
  "${sudo[@]}" mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = off" |
    "${sudo[@]}" tee /etc/postgresql-common/createcluster.d/modelyard.conf >/dev/null
fi
# --no-install-recommends keeps buildah from pulling in podman's whole stack.
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
log "${set_name} dependencies installed"
