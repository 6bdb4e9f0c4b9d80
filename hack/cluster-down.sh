#!/usr/bin/env bash
# Stops everything cluster-up started, by pid, removes pod sandboxes and containers
# through containerd first, unmounts what the node mounted, deletes the pod bridge
# and the kube-proxy rules, and removes the state directory.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ ! -d "${MODELYARD_STATE_DIR}" ]]; then
  log "no cluster state at ${MODELYARD_STATE_DIR}; nothing to do"
  exit 0
fi

ctr_() { ctr --address "${CONTAINERD_SOCK}" -n k8s.io "$@"; }

# The kubelet goes first so that it does not restart what we remove below.
stop_daemon kubelet

if pid_of containerd >/dev/null; then
  # Killing the tasks ends each container's shim; the network namespaces that the
  # CRI plugin mounted for sandboxes are read from the containers' specs.
  netns=()
  for c in $(ctr_ containers ls -q 2>/dev/null); do
    while read -r ns; do netns+=("${ns}"); done < <(ctr_ containers info "${c}" 2>/dev/null |
      grep -o '"/var/run/netns/cni-[0-9a-f-]*"' | tr -d '"' | sort -u)
    ctr_ tasks kill -s SIGKILL "${c}" >/dev/null 2>&1 || true
  done
  for c in $(ctr_ containers ls -q 2>/dev/null); do
    for _ in $(seq 1 20); do
      ctr_ tasks delete "${c}" >/dev/null 2>&1 && break
      ctr_ tasks ls -q 2>/dev/null | grep -qx "${c}" || break
      sleep 0.25
    done
    ctr_ containers delete "${c}" >/dev/null 2>&1 || true
  done
  for ns in "${netns[@]}"; do
    umount "${ns}" 2>/dev/null || true
    rm -f "${ns}"
  done
fi
stop_daemon containerd
# The shims' socket directory, if no other containerd uses it.
rmdir /run/containerd/s /run/containerd 2>/dev/null || true

# Shims of our containerd that outlived it carry its socket path in their arguments.
for p in /proc/[0-9]*; do
  if tr '\0' ' ' <"${p}/cmdline" 2>/dev/null | grep -qF -- "-address ${CONTAINERD_SOCK}"; then
    log "killing leftover shim ${p#/proc/}"
    kill -KILL "${p#/proc/}" 2>/dev/null || true
  fi
done

if pid_of kube-proxy >/dev/null; then
  stop_daemon kube-proxy
  # Removes the KUBE-* chains kube-proxy installed.
  "${K8S_BIN_DIR}/kube-proxy" --cleanup >/dev/null 2>&1 || true
fi
stop_daemon kube-scheduler kube-controller-manager kube-apiserver
stop_daemon etcd
# Whatever else was started with start_daemon under this state dir: the S3 server
# (hack/s3.sh), whose objects and credentials stay in ${S3_DIR} for the next cluster-up.
for f in "${RUN_DIR}"/*.pid; do
  [[ -e "${f}" ]] || continue
  name="$(basename "${f}" .pid)"
  stop_daemon "${name}"
done

# Daemons of this state dir left without a pid file (a cluster-up that ran while a cluster-down
# removed the state dir): found by their name and the state dir in their arguments, as pid_of
# tells ours. Then whatever still runs in the pods' cgroups, whose containerd went with them.
strays=()
for p in /proc/[0-9]*; do
  args="$(tr '\0' ' ' <"${p}/cmdline" 2>/dev/null)" || continue
  case "$(basename "${args%% *}")" in
    etcd | kube-apiserver | kube-controller-manager | kube-scheduler | containerd | kubelet | kube-proxy | versitygw)
      [[ "${args}" == *"${MODELYARD_STATE_DIR}/"* ]] && strays+=("${p#/proc/}") ;;
  esac
done
if [[ ${#strays[@]} -gt 0 ]]; then
  log "stopping daemons of ${MODELYARD_STATE_DIR} without a pid file: ${strays[*]}"
  kill -TERM "${strays[@]}" 2>/dev/null || true
  sleep 2
  kill -KILL "${strays[@]}" 2>/dev/null || true
fi
for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  [[ -d "${root}" ]] || continue
  find "${root}" -name cgroup.procs -exec cat {} + 2>/dev/null | while read -r pid; do
    kill -KILL "${pid}" 2>/dev/null || true
  done
done

# Chains the kubelet itself creates (kube-proxy --cleanup leaves them), removed only
# when this cluster had a node.
if [[ -d "${MODELYARD_STATE_DIR}/kubelet" ]]; then
  # node-up.sh's refusal of unprogrammed Service addresses.
  iptables -w -D FORWARD -i "${BRIDGE}" -d "${SERVICE_CIDR}" -j REJECT 2>/dev/null || true
  for ipt in iptables ip6tables; do
    command -v "${ipt}" >/dev/null || continue
    "${ipt}" -w -D INPUT -j KUBE-FIREWALL 2>/dev/null || true
    "${ipt}" -w -D OUTPUT -j KUBE-FIREWALL 2>/dev/null || true
    for table in filter nat mangle; do
      for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
        "${ipt}" -w -t "${table}" -F "${chain}" 2>/dev/null || true
        "${ipt}" -w -t "${table}" -X "${chain}" 2>/dev/null || true
      done
    done
  done
fi

# Mounts under the state dir (kubelet volumes, sandbox /dev/shm, overlay rootfs),
# deepest first.
for _ in 1 2 3; do
  mounts="$(awk -v s="${MODELYARD_STATE_DIR}/" 'index($5, s) == 1 { print $5 }' /proc/self/mountinfo | sort -r)"
  [[ -n "${mounts}" ]] || break
  while read -r m; do umount "${m}" 2>/dev/null || umount -l "${m}" 2>/dev/null || true; done <<<"${mounts}"
done

if ip link show "${BRIDGE}" >/dev/null 2>&1; then
  ip link delete "${BRIDGE}"
fi
# Empty pod cgroups the kubelet created (cgroup v1 has one tree per controller).
for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
  if [[ -d "${root}" ]]; then
    find "${root}" -depth -type d -exec rmdir {} + 2>/dev/null || true
  fi
done

rm -rf "${MODELYARD_STATE_DIR}"
log "cluster removed (${MODELYARD_STATE_DIR})"
