# shellcheck shell=bash
# Shared settings for the local-cluster scripts; sourced, never executed.
# Every value can be overridden from the environment (the Makefile passes its own).
# shellcheck disable=SC2034 # the variables are used by the scripts that source this

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "${HACK_DIR}/.." && pwd)"

# Versions are pinned by the wrapper modules' go.mod files so that go.sum matches;
# read them from there rather than repeating them.
gomod_version() { # <go.mod> <module path>
  awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1"
}
K8S_VERSION="${K8S_VERSION:-$(gomod_version "${HACK_DIR}/k8s-build/go.mod" k8s.io/kubernetes)}"
ETCD_VERSION="${ETCD_VERSION:-$(gomod_version "${HACK_DIR}/etcd-build/go.mod" go.etcd.io/etcd/server/v3)}"
HELM_VERSION="${HELM_VERSION:-$(gomod_version "${HACK_DIR}/helm-build/go.mod" helm.sh/helm/v3)}"
COREDNS_VERSION="${COREDNS_VERSION:-$(gomod_version "${HACK_DIR}/coredns-build/go.mod" github.com/coredns/coredns)}"
# The S3 server: the cluster's (hack/s3.sh), the tests' and the workloads benchmark's.
VERSITYGW_VERSION="${VERSITYGW_VERSION:-$(gomod_version "${HACK_DIR}/versitygw-build/go.mod" github.com/versity/versitygw)}"
# Argo CD for tests/e2e/test_argocd.py (application controller, repo server, CLI), not the cluster.
ARGOCD_VERSION="${ARGOCD_VERSION:-$(gomod_version "${HACK_DIR}/argocd-build/go.mod" github.com/argoproj/argo-cd/v3)}"

MODELYARD_CACHE_DIR="${MODELYARD_CACHE_DIR:-${XDG_CACHE_HOME:-${HOME}/.cache}/modelyard}"
MODELYARD_STATE_DIR="${MODELYARD_STATE_DIR:-${MODELYARD_CACHE_DIR}/cluster}"
K8S_BIN_DIR="${MODELYARD_CACHE_DIR}/bin/kubernetes-${K8S_VERSION}"
ETCD_BIN_DIR="${MODELYARD_CACHE_DIR}/bin/etcd-${ETCD_VERSION}"
# -r2: Helm stamped with the Kubernetes version of its client-go (build_helm). The cache is
# keyed by directory, so a changed build recipe gets a new revision and older caches rebuild.
HELM_BIN_DIR="${MODELYARD_CACHE_DIR}/bin/helm-${HELM_VERSION}-r2"
COREDNS_BIN_DIR="${MODELYARD_CACHE_DIR}/bin/coredns-${COREDNS_VERSION}"
VERSITYGW_BIN_DIR="${MODELYARD_CACHE_DIR}/bin/versitygw-${VERSITYGW_VERSION}"
ARGOCD_BIN_DIR="${MODELYARD_CACHE_DIR}/bin/argocd-${ARGOCD_VERSION}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Cluster layout. The node address lives on a bridge that the cluster creates, so
# pods reach the host (API server, a test S3 server) through their gateway and
# nothing binds to the machine's external interfaces.
CLUSTER_NODES="${CLUSTER_NODES:-1}"
NODE_NAME="${MODELYARD_NODE_NAME:-modelyard-node}"
NODE_IP="${MODELYARD_NODE_IP:-10.244.0.1}"
POD_CIDR="${MODELYARD_POD_CIDR:-10.244.0.0/24}"
SERVICE_CIDR="${MODELYARD_SERVICE_CIDR:-10.96.0.0/16}"
SERVICE_IP="${SERVICE_CIDR%.*/*}.1" # the `kubernetes` Service: first address of the range
DNS_IP="${SERVICE_CIDR%.*/*}.10"    # the cluster DNS Service, where kubeadm puts it
BRIDGE="${MODELYARD_BRIDGE:-modelyard0}"
APISERVER_PORT="${MODELYARD_APISERVER_PORT:-6443}"
ETCD_PORT="${MODELYARD_ETCD_PORT:-12379}"
PAUSE_IMAGE="localhost/modelyard/pause:3.10"
COREDNS_IMAGE="localhost/modelyard/coredns:${COREDNS_VERSION}"

# The S3-compatible server of make demo and the e2e tier (hack/s3.sh): its objects, accounts
# and root credentials live outside the state dir, so `make cluster-down` keeps them.
S3_DIR="${MODELYARD_S3_DIR:-${MODELYARD_CACHE_DIR}/s3}"
S3_CREDENTIALS="${S3_DIR}/credentials"
S3_PORT="${MODELYARD_S3_PORT:-9333}"
S3_ADMIN_PORT="${MODELYARD_S3_ADMIN_PORT:-9334}"

PKI_DIR="${MODELYARD_STATE_DIR}/pki"
RUN_DIR="${MODELYARD_STATE_DIR}/run"
LOG_DIR="${MODELYARD_STATE_DIR}/logs"
KUBECONFIG_PATH="${MODELYARD_STATE_DIR}/kubeconfig"
CONTAINERD_DIR="${MODELYARD_STATE_DIR}/containerd"
CONTAINERD_SOCK="${CONTAINERD_DIR}/containerd.sock"

# pid_of <name>: the pid of a daemon we started, if it still runs. The state dir
# appears in every daemon's arguments, which guards against a recycled pid.
pid_of() {
  local f="${RUN_DIR}/$1.pid" pid
  [[ -f "${f}" ]] || return 1
  pid="$(<"${f}")"
  [[ -r "/proc/${pid}/cmdline" ]] && tr '\0' ' ' <"/proc/${pid}/cmdline" | grep -qF "${MODELYARD_STATE_DIR}" &&
    echo "${pid}"
}

# start_daemon <name> <command>...: a plain background process in its own session
# (PID 1 is not systemd), detached from the caller's terminal and pipes so that
# make and pytest's subprocess calls return; pid and log go under the state dir.
start_daemon() {
  local name="$1"; shift
  if pid_of "${name}" >/dev/null; then
    log "${name} already running (pid $(pid_of "${name}"))"
    return
  fi
  mkdir -p "${RUN_DIR}" "${LOG_DIR}"
  (
    # Nothing but stdin, stdout and stderr goes to the daemon: an inherited descriptor lives as
    # long as the daemon does, and with `flock /tmp/modelyard-cluster.lock make cluster-up` one
    # of them holds the lock, which the cluster's daemons would then keep until cluster-down.
    local fd
    for fd in /proc/"${BASHPID}"/fd/*; do
      fd="${fd##*/}"
      ((fd > 2)) && exec {fd}>&-
    done
    exec setsid "$@"
  ) </dev/null >>"${LOG_DIR}/${name}.log" 2>&1 &
  echo $! >"${RUN_DIR}/${name}.pid"
  log "started ${name} (pid $!, log ${LOG_DIR}/${name}.log)"
}

# stop_daemon <name>...: TERM to all of them at once, then KILL whatever is left
# after a grace period; returns when all are gone. start_daemon made each daemon the
# leader of its own process group, so the signal goes to the group: children that a
# daemon started (a wrapper script's server) go with it.
stop_daemon() {
  local name pid pids=() i
  for name in "$@"; do
    if pid="$(pid_of "${name}")"; then
      kill -TERM -- "-${pid}" 2>/dev/null || kill -TERM "${pid}" 2>/dev/null || true
      pids+=("${pid}")
      log "stopping ${name} (pid ${pid})"
    fi
    rm -f "${RUN_DIR}/${name}.pid"
  done
  for pid in "${pids[@]}"; do
    for i in $(seq 1 50); do
      kill -0 "${pid}" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "${pid}" 2>/dev/null; then
      log "pid ${pid} ignored SIGTERM; killing it"
      kill -KILL -- "-${pid}" 2>/dev/null || kill -KILL "${pid}" 2>/dev/null || true
    fi
  done
}

# write_file <path>: stdin into <path>, leaving the file untouched when the content is
# the same. Running daemons watch their files (kube-proxy exits when its
# configuration is written to), so a second cluster-up must not rewrite them.
write_file() {
  local tmp
  tmp="$(mktemp "$1.XXXXXX")"
  cat >"${tmp}"
  if cmp -s "${tmp}" "$1"; then
    rm -f "${tmp}"
  else
    mv "${tmp}" "$1"
  fi
}

# wait_for <description> <timeout seconds> <command>...
wait_for() {
  local what="$1" timeout="$2" start=$SECONDS; shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS - start < timeout)) || die "timed out after ${timeout}s waiting for ${what}"
    sleep 0.5
  done
}

# api <path>: GET from the API server as the cluster admin.
api() {
  curl -fsS --max-time 5 --cacert "${PKI_DIR}/ca.crt" --cert "${PKI_DIR}/admin.crt" \
    --key "${PKI_DIR}/admin.key" "$(<"${RUN_DIR}/apiserver.url")$1"
}
