#!/usr/bin/env bash
# Adds the node to a running control plane: containerd (Debian's, with its own
# config, root and state under the state dir), the pod bridge network, the local
# pause image, the kubelet and kube-proxy. Called by cluster-up.sh; needs root.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

command -v containerd >/dev/null || die "containerd is not installed (make cluster-deps)"
SERVER="$(<"${RUN_DIR}/apiserver.url")"
CNI_CONF_DIR="${MODELYARD_STATE_DIR}/cni/net.d"
mkdir -p "${CONTAINERD_DIR}" "${CNI_CONF_DIR}" "${MODELYARD_STATE_DIR}/kubelet"

# --- containerd ---------------------------------------------------------------------
# restrict_oom_score_adj: this VM's root lacks CAP_SYS_RESOURCE, and without it every
# sandbox fails ("runc create failed ... can't get final child's PID from pipe: EOF").
write_file "${CONTAINERD_DIR}/config.toml" <<TOML
version = 2
root = "${CONTAINERD_DIR}/root"
state = "${CONTAINERD_DIR}/state"
[grpc]
  address = "${CONTAINERD_SOCK}"
[ttrpc]
  address = "${CONTAINERD_SOCK}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "${CONTAINERD_DIR}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "${CONTAINERD_DIR}/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${CNI_CONF_DIR}"
TOML

# --- pod network: the bridge cluster-up created, host-local addresses ---------------
# Pods get a route to the service range only (no default route): they reach the host
# at the gateway ${NODE_IP}, each other and Services, and nothing off this machine.
# The IPAM data lives in the state dir so cluster-down forgets every lease.
write_file "${CNI_CONF_DIR}/10-modelyard.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "modelyard",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "${BRIDGE}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "${MODELYARD_STATE_DIR}/cni/ipam",
        "ranges": [[{"subnet": "${POD_CIDR}", "gateway": "${NODE_IP}"}]],
        "routes": [{"dst": "${SERVICE_CIDR}"}]
      }
    }
  ]
}
JSON
# kube-proxy's Service rules must also see traffic between pods on the same bridge.
modprobe br_netfilter 2>/dev/null || true
if [[ -w /proc/sys/net/bridge/bridge-nf-call-iptables ]]; then
  echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
fi

start_daemon containerd containerd --config "${CONTAINERD_DIR}/config.toml"
ctr_() { ctr --address "${CONTAINERD_SOCK}" -n k8s.io "$@"; }
wait_for "containerd (log: ${LOG_DIR}/containerd.log)" 30 ctr_ version

if ! ctr_ images ls -q | grep -qx "${PAUSE_IMAGE}"; then
  ctr_ images import "$("${HACK_DIR}/images.sh" pause)" >/dev/null
  log "imported ${PAUSE_IMAGE}"
fi

# --- kubelet ------------------------------------------------------------------------
write_file "${MODELYARD_STATE_DIR}/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${NODE_IP}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${PKI_DIR}/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: ${PKI_DIR}/kubelet-server.crt
tlsPrivateKeyFile: ${PKI_DIR}/kubelet-server.key
containerRuntimeEndpoint: unix://${CONTAINERD_SOCK}
cgroupDriver: cgroupfs
failSwapOn: false
# As for containerd: no CAP_SYS_RESOURCE, so the kubelet cannot lower its own score.
oomScoreAdj: 0
# Images cannot be pulled again, so never garbage-collect them, and evict only when
# the disk is really full.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
podLogsDir: ${MODELYARD_STATE_DIR}/pod-logs
# No cluster DNS: pods get an empty resolv.conf rather than the host's resolvers.
resolvConf: ""
clusterDomain: cluster.local
serializeImagePulls: false
YAML
start_daemon kubelet "${K8S_BIN_DIR}/kubelet" \
  --config "${MODELYARD_STATE_DIR}/kubelet/config.yaml" \
  --kubeconfig "${MODELYARD_STATE_DIR}/kubelet-client.kubeconfig" \
  --root-dir "${MODELYARD_STATE_DIR}/kubelet" \
  --node-ip "${NODE_IP}" --hostname-override "${NODE_NAME}"

# --- kube-proxy: Service cluster IPs (the operator in a pod reaches kubernetes.default)
write_file "${MODELYARD_STATE_DIR}/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: ${MODELYARD_STATE_DIR}/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: ${NODE_NAME}
clusterCIDR: ${POD_CIDR}
bindAddress: ${NODE_IP}
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
# NodePorts only on the node's bridge address, never on the machine's interfaces.
nodePortAddresses: [${NODE_IP}/32]
# Leave the host's conntrack sysctls alone (zero means "do not set").
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
start_daemon kube-proxy "${K8S_BIN_DIR}/kube-proxy" --config "${MODELYARD_STATE_DIR}/kube-proxy.yaml"

node_ready() {
  api "/api/v1/nodes/${NODE_NAME}" | python3 -c '
import json, sys
conds = json.load(sys.stdin)["status"].get("conditions", [])
sys.exit(0 if any(c["type"] == "Ready" and c["status"] == "True" for c in conds) else 1)'
}
wait_for "node ${NODE_NAME} Ready (log: ${LOG_DIR}/kubelet.log)" 120 node_ready
log "node ${NODE_NAME} Ready at ${NODE_IP} (server ${SERVER})"
