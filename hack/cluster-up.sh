#!/usr/bin/env bash
# Starts the local cluster. CLUSTER_NODES=0: etcd, API server, controller manager
# and scheduler on loopback (the integration tier; no root needed). CLUSTER_NODES=1
# (default): the same plus containerd, a CNI bridge, kubelet and kube-proxy, so pods
# run (needs root). Safe to run again: running daemons are kept, and a control plane
# started with CLUSTER_NODES=0 is moved onto the node address when a node is added.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ "${CLUSTER_NODES}" == 0 || "${CLUSTER_NODES}" == 1 ]] || die "CLUSTER_NODES must be 0 or 1"
if [[ "${CLUSTER_NODES}" == 1 && "$(id -u)" != 0 ]]; then
  die "a node (CLUSTER_NODES=1) needs root for containerd, mounts and the pod network"
fi
start=$SECONDS

if [[ "${CLUSTER_NODES}" == 1 ]]; then
  "${HACK_DIR}/install-deps.sh"
  "${HACK_DIR}/build-binaries.sh" etcd kubernetes coredns
else
  "${HACK_DIR}/build-binaries.sh" etcd kubernetes
fi
mkdir -p "${RUN_DIR}" "${LOG_DIR}"

if [[ "${CLUSTER_NODES}" == 1 ]]; then
  # The node address must exist before the API server can bind to it.
  if ! ip link show "${BRIDGE}" >/dev/null 2>&1; then
    ip link add "${BRIDGE}" type bridge
  fi
  # (grep without -q reads all of ip's output: no SIGPIPE failing the pipeline)
  ip -o addr show dev "${BRIDGE}" | grep -F " ${NODE_IP}/" >/dev/null ||
    ip addr add "${NODE_IP}/${POD_CIDR#*/}" dev "${BRIDGE}"
  ip link set "${BRIDGE}" up
  APISERVER_IP="${NODE_IP}"
else
  APISERVER_IP=127.0.0.1
  # A node may already be running (cluster-up then cluster-up CLUSTER_NODES=0):
  # keep the control plane where the node expects it.
  if pid_of kubelet >/dev/null; then
    APISERVER_IP="${NODE_IP}"
  fi
fi
SERVER="https://${APISERVER_IP}:${APISERVER_PORT}"

"${HACK_DIR}/pki.sh" "${PKI_DIR}" "${NODE_NAME}" "${NODE_IP}"

# write_kubeconfig <file> <client cert name in pki/> <server>
write_kubeconfig() {
  local file="$1" user="$2" server="$3"
  # (write_file's temporary file is mode 0600: the kubeconfigs hold private keys)
  write_file "${file}" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: modelyard
  cluster:
    server: ${server}
    certificate-authority-data: $(base64 -w0 "${PKI_DIR}/ca.crt")
users:
- name: ${user}
  user:
    client-certificate-data: $(base64 -w0 "${PKI_DIR}/${user}.crt")
    client-key-data: $(base64 -w0 "${PKI_DIR}/${user}.key")
contexts:
- name: modelyard
  context:
    cluster: modelyard
    user: ${user}
current-context: modelyard
KUBECONFIG
}

# A control plane bound elsewhere (CLUSTER_NODES=0 earlier, now a node) restarts on
# the new address; etcd and its data stay.
if [[ -f "${RUN_DIR}/apiserver.url" && "$(<"${RUN_DIR}/apiserver.url")" != "${SERVER}" ]]; then
  log "moving the control plane from $(<"${RUN_DIR}/apiserver.url") to ${SERVER}"
  stop_daemon kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver
fi
echo "${SERVER}" | write_file "${RUN_DIR}/apiserver.url"
write_kubeconfig "${KUBECONFIG_PATH}" admin "${SERVER}"
for c in controller-manager scheduler kubelet-client kube-proxy; do
  write_kubeconfig "${MODELYARD_STATE_DIR}/${c}.kubeconfig" "${c}" "${SERVER}"
done

# --- etcd: plain HTTP, loopback only ------------------------------------------------
start_daemon etcd "${ETCD_BIN_DIR}/etcd" \
  --name modelyard --data-dir "${MODELYARD_STATE_DIR}/etcd" \
  --listen-client-urls "http://127.0.0.1:${ETCD_PORT}" \
  --advertise-client-urls "http://127.0.0.1:${ETCD_PORT}" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-cluster "modelyard=http://127.0.0.1:$((ETCD_PORT + 1))" \
  --log-level warn
wait_for "etcd" 30 curl -fsS "http://127.0.0.1:${ETCD_PORT}/health"

# --- API server ----------------------------------------------------------------------
start_daemon kube-apiserver "${K8S_BIN_DIR}/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:${ETCD_PORT}" \
  --bind-address "${APISERVER_IP}" --advertise-address "${APISERVER_IP}" \
  --secure-port "${APISERVER_PORT}" \
  --tls-cert-file "${PKI_DIR}/apiserver.crt" --tls-private-key-file "${PKI_DIR}/apiserver.key" \
  --client-ca-file "${PKI_DIR}/ca.crt" \
  --service-account-key-file "${PKI_DIR}/sa.pub" \
  --service-account-signing-key-file "${PKI_DIR}/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range "${SERVICE_CIDR}" \
  --authorization-mode Node,RBAC \
  --enable-admission-plugins NodeRestriction \
  --allow-privileged=true \
  --kubelet-client-certificate "${PKI_DIR}/apiserver-kubelet-client.crt" \
  --kubelet-client-key "${PKI_DIR}/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority "${PKI_DIR}/ca.crt" \
  --kubelet-preferred-address-types InternalIP \
  --profiling=false
wait_for "kube-apiserver /readyz (log: ${LOG_DIR}/kube-apiserver.log)" 90 api /readyz

# --- controller manager and scheduler: loopback-only ports, single instance --------
start_daemon kube-controller-manager "${K8S_BIN_DIR}/kube-controller-manager" \
  --kubeconfig "${MODELYARD_STATE_DIR}/controller-manager.kubeconfig" \
  --authentication-kubeconfig "${MODELYARD_STATE_DIR}/controller-manager.kubeconfig" \
  --authorization-kubeconfig "${MODELYARD_STATE_DIR}/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false \
  --service-account-private-key-file "${PKI_DIR}/sa.key" \
  --root-ca-file "${PKI_DIR}/ca.crt" \
  --cluster-signing-cert-file "${PKI_DIR}/ca.crt" --cluster-signing-key-file "${PKI_DIR}/ca.key" \
  --use-service-account-credentials=true \
  --service-cluster-ip-range "${SERVICE_CIDR}" \
  --profiling=false
start_daemon kube-scheduler "${K8S_BIN_DIR}/kube-scheduler" \
  --kubeconfig "${MODELYARD_STATE_DIR}/scheduler.kubeconfig" \
  --authentication-kubeconfig "${MODELYARD_STATE_DIR}/scheduler.kubeconfig" \
  --authorization-kubeconfig "${MODELYARD_STATE_DIR}/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --leader-elect=false --profiling=false

if [[ "${CLUSTER_NODES}" == 1 ]]; then
  "${HACK_DIR}/node-up.sh"
fi

# Pods can only be created once the controller manager has made the namespace's
# default service account; wait for it so callers can create pods straight away.
wait_for "the default service account" 60 api /api/v1/namespaces/default/serviceaccounts/default

# A daemon that exited after starting (a bad flag, a port in use) fails the start
# here, not in the first test that needs it.
daemons=(etcd kube-apiserver kube-controller-manager kube-scheduler)
[[ "${CLUSTER_NODES}" == 1 ]] && daemons+=(containerd kubelet kube-proxy)
for d in "${daemons[@]}"; do
  pid_of "${d}" >/dev/null || die "${d} is not running; see ${LOG_DIR}/${d}.log"
done

# The S3 server of make demo and the e2e tier, on the node address, serving what it stored
# before the last cluster-down (hack/s3.sh).
if [[ "${CLUSTER_NODES}" == 1 ]]; then
  "${HACK_DIR}/s3.sh" up
fi

log "cluster ready in $((SECONDS - start))s ($([[ "${CLUSTER_NODES}" == 1 ]] && echo "node ${NODE_NAME} at ${NODE_IP}" || echo "control plane only"))"
echo "export KUBECONFIG=${KUBECONFIG_PATH}"
