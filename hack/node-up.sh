#!/usr/bin/env bash
# Adds the node to a running control plane: containerd (Debian's, with its own
# config, root and state under the state dir), the pod bridge network, the local
# pause image, the kubelet, kube-proxy and the cluster DNS. Called by cluster-up.sh;
# needs root.
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
# A Service address kube-proxy has not programmed yet (for seconds on a busy node) is not
# rewritten to a pod's, and pods' packets to it would follow the machine's default route off
# this machine. Refuse them here instead: the sender sees a refused connection at once.
# kube-proxy rewrites the addresses it has programmed before this rule is reached.
iptables -w -C FORWARD -i "${BRIDGE}" -d "${SERVICE_CIDR}" -j REJECT 2>/dev/null \
  || iptables -w -I FORWARD 1 -i "${BRIDGE}" -d "${SERVICE_CIDR}" -j REJECT

start_daemon containerd containerd --config "${CONTAINERD_DIR}/config.toml"
ctr_() { ctr --address "${CONTAINERD_SOCK}" -n k8s.io "$@"; }
wait_for "containerd (log: ${LOG_DIR}/containerd.log)" 30 ctr_ version

# The images the node itself runs: the pod sandbox and the cluster DNS.
for image in pause:"${PAUSE_IMAGE}" coredns:"${COREDNS_IMAGE}"; do
  if ! ctr_ images ls -q | grep -x "${image#*:}" >/dev/null; then
    ctr_ images import "$("${HACK_DIR}/images.sh" "${image%%:*}")" >/dev/null
    log "imported ${image#*:}"
  fi
done

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
# Pods resolve through the cluster DNS only, never the host's resolvers.
resolvConf: ""
clusterDomain: cluster.local
clusterDNS: [${DNS_IP}]
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

# --- cluster DNS: CoreDNS serving cluster.local only (see coredns-build/main.go) --------
kubectl_() { "${K8S_BIN_DIR}/kubectl" --kubeconfig "${KUBECONFIG_PATH}" "$@"; }
kubectl_ apply --server-side --force-conflicts -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:1053 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      priorityClassName: system-cluster-critical
      # Itself resolves nothing through DNS.
      dnsPolicy: Default
      securityContext:
        runAsNonRoot: true
        runAsUser: 65534
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: coredns
        image: ${COREDNS_IMAGE}
        imagePullPolicy: Never
        args: [-conf, /etc/coredns/Corefile]
        # An unprivileged port: the Service maps 53 onto it, no capability needed.
        ports:
        - {name: dns, containerPort: 1053, protocol: UDP}
        - {name: dns-tcp, containerPort: 1053, protocol: TCP}
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
        livenessProbe: {httpGet: {path: /health, port: 8080}, periodSeconds: 10}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  selector: {k8s-app: kube-dns}
  clusterIP: ${DNS_IP}
  ports:
  - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
YAML
wait_for "cluster DNS (kubectl -n kube-system get pods)" 90 \
  kubectl_ -n kube-system wait --for=jsonpath='{.status.readyReplicas}'=1 deployment/coredns --timeout=1s
log "node ${NODE_NAME} Ready at ${NODE_IP} (server ${SERVER})"
