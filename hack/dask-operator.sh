#!/usr/bin/env bash
# `make dask-operator`: installs the Dask operator (dask-kubernetes), the engine of TrainingJob
# spec.workers, into the cluster KUBECONFIG names (the Makefile passes the local one), and waits
# until its pod is Ready. Idempotent: a second run upgrades the release in place.
#   - Helm chart: the one shipped in the dask-kubernetes wheel of our lock, used where pip put it
#     (its CRDs in crds/ are installed on the first install only: Helm never upgrades CRDs).
#   - Image: ours (images/dask-operator), built and imported into the node when the cluster is the
#     local one; on another cluster, push it and set DASK_OPERATOR_IMAGE to its repository.
#   - Our security bar: restricted Pod Security Standard on the namespace, non-root, read-only
#     root file system with an emptyDir /tmp, no capabilities, RuntimeDefault seccomp.
# Settings: DASK_OPERATOR_NAMESPACE, DASK_OPERATOR_RELEASE, DASK_OPERATOR_IMAGE, IMAGE_TAG,
# DASK_OPERATOR_TIMEOUT (seconds), PY (the virtualenv's python, where dask-kubernetes is).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAMESPACE="${DASK_OPERATOR_NAMESPACE:-dask-operator}"
# The chart names its objects after the release, and just the release when it contains the
# chart's name: `dask-kubernetes-operator`, as upstream's install documents it.
RELEASE="${DASK_OPERATOR_RELEASE:-dask-kubernetes-operator}"
IMAGE="${DASK_OPERATOR_IMAGE:-docker.io/modelyard/dask-operator}"
IMAGE_TAG="${IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' "${REPO_ROOT}/pyproject.toml" | head -1)}"
TIMEOUT="${DASK_OPERATOR_TIMEOUT:-300}"
PY="${PY:-${REPO_ROOT}/.venv/bin/python}"
[[ -n "${IMAGE_TAG}" && "${IMAGE_TAG}" != latest ]] || die "IMAGE_TAG must be set and not 'latest'"

# kubectl and helm are the ones hack/ builds, whatever else is on PATH.
"${HACK_DIR}/build-binaries.sh" kubernetes helm
PATH="${K8S_BIN_DIR}:${HELM_BIN_DIR}:${PATH}"
export KUBECONFIG="${KUBECONFIG:-${KUBECONFIG_PATH}}"
kubectl version --request-timeout=5s >/dev/null 2>&1 ||
  die "no cluster answers at ${KUBECONFIG} (the local one: make cluster-up)"

# Found without importing the package (its import pulls in the whole client).
chart="$("${PY}" -c 'import importlib.util, pathlib
spec = importlib.util.find_spec("dask_kubernetes")
assert spec is not None and spec.submodule_search_locations
print(pathlib.Path(spec.submodule_search_locations[0], "operator/deployment/helm/dask-kubernetes-operator"))')" ||
  die "dask-kubernetes is not installed in ${PY} (make install)"
[[ -f "${chart}/Chart.yaml" ]] || die "no Helm chart in ${chart}"

if [[ "${KUBECONFIG}" == "${KUBECONFIG_PATH}" ]]; then
  log "local cluster: building and importing ${IMAGE}:${IMAGE_TAG}"
  "${HACK_DIR}/images.sh" build dask-operator
fi

kubectl create namespace "${NAMESPACE}" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label namespace "${NAMESPACE}" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null

values="$(mktemp)"
trap 'rm -f "${values}"' EXIT
# JSON is YAML. Every key of the chart's securityContext is set: Helm merges maps with the chart's
# defaults, and those run as uid 1000.
cat >"${values}" <<VALUES
{
  "image": {"name": "${IMAGE}", "tag": "${IMAGE_TAG}", "pullPolicy": "IfNotPresent"},
  "podSecurityContext": {
    "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "fsGroup": 65532,
    "seccompProfile": {"type": "RuntimeDefault"}
  },
  "securityContext": {
    "allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true,
    "runAsUser": 65532, "capabilities": {"drop": ["ALL"]}
  },
  "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
  "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
  "resources": {
    "requests": {"cpu": "50m", "memory": "192Mi"},
    "limits": {"cpu": "1", "memory": "512Mi"}
  },
  "kopfArgs": ["--all-namespaces", "--standalone"]
}
VALUES
# --standalone: one replica (the chart's Deployment recreates rather than rolls), so no kopf
# peering; without it, kopf would join a `default` peering another kopf operator may use.
log "helm upgrade --install ${RELEASE} (chart ${chart#"${REPO_ROOT}"/}) into ${NAMESPACE}"
helm upgrade --install "${RELEASE}" "${chart}" --namespace "${NAMESPACE}" --values "${values}" \
  --wait --timeout "${TIMEOUT}s"
deployment="$(kubectl -n "${NAMESPACE}" get deployment -l "app.kubernetes.io/instance=${RELEASE}" -o name)"
kubectl -n "${NAMESPACE}" rollout status "${deployment}" --timeout "${TIMEOUT}s"
log "the Dask operator is Ready in ${NAMESPACE}: $(kubectl -n "${NAMESPACE}" get pods \
  -l "app.kubernetes.io/instance=${RELEASE}" -o jsonpath='{.items[*].metadata.name}')"
