#!/usr/bin/env bash
# `make demo`: the quickstart end to end, as a user would run it.
#   cluster (the one KUBECONFIG names if it answers, else the local one from hack/)
#   → S3-compatible server → images → Helm chart → examples/quickstart/ → a prediction.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NAMESPACE="${DEMO_NAMESPACE:-modelyard-demo}"
RELEASE_NAMESPACE="${DEMO_RELEASE_NAMESPACE:-modelyard-system}"
t_start=$SECONDS
step() { printf '\n\033[1m[%4ds] %s\033[0m\n' "$((SECONDS - t_start))" "$*"; }

# kubectl and helm are the ones hack/ builds, whatever else is on PATH.
"${HACK_DIR}/build-binaries.sh" kubernetes helm
PATH="${K8S_BIN_DIR}:${HELM_BIN_DIR}:${PATH}"

# --- cluster --------------------------------------------------------------------------
local_cluster=true
if [[ -n "${KUBECONFIG:-}" && "${KUBECONFIG}" != "${KUBECONFIG_PATH}" ]] &&
  kubectl version --request-timeout=5s >/dev/null 2>&1; then
  local_cluster=false
  step "using the cluster in KUBECONFIG ($(kubectl config current-context))"
  [[ -n "${MODELYARD_S3_ENDPOINT:-}" ]] ||
    die "with your own cluster, set MODELYARD_S3_ENDPOINT to an S3 endpoint its pods reach (and load the images: see README)"
  S3_ENDPOINT="${MODELYARD_S3_ENDPOINT}"
  S3_KEY="${AWS_ACCESS_KEY_ID:?with your own cluster, set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for the S3 endpoint}"
  S3_SECRET="${AWS_SECRET_ACCESS_KEY:?set AWS_SECRET_ACCESS_KEY too}"
else
  step "local cluster (binaries are built once and cached; a cold build takes many minutes)"
  "${HACK_DIR}/install-deps.sh"
  CLUSTER_NODES=1 "${HACK_DIR}/cluster-up.sh"
  export KUBECONFIG="${KUBECONFIG_PATH}"
  step "S3-compatible server (versitygw) on the node's bridge address ${NODE_IP}:${S3_PORT}"
  # cluster-up has started it; its objects and credentials outlive the cluster (hack/s3.sh).
  "${HACK_DIR}/s3.sh" up
  S3_ENDPOINT="http://${NODE_IP}:${S3_PORT}"
  # shellcheck source=/dev/null
  source "${S3_CREDENTIALS}"
  S3_KEY="${ROOT_ACCESS_KEY_ID}" S3_SECRET="${ROOT_SECRET_ACCESS_KEY}"
  echo "  data in ${S3_DIR}/data (make s3-wipe deletes it)"
  step "images (built on a local Debian base with buildah, imported into the node)"
  "${HACK_DIR}/images.sh" build
fi

# --- operator -------------------------------------------------------------------------
step "Helm chart into ${RELEASE_NAMESPACE}"
for ns in "${RELEASE_NAMESPACE}" "${NAMESPACE}"; do
  kubectl create namespace "${ns}" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl label namespace "${ns}" --overwrite pod-security.kubernetes.io/enforce=restricted >/dev/null
done
kubectl -n "${NAMESPACE}" create secret generic modelyard-s3 --dry-run=client -o yaml \
  --from-literal=AWS_ACCESS_KEY_ID="${S3_KEY}" \
  --from-literal=AWS_SECRET_ACCESS_KEY="${S3_SECRET}" | kubectl apply -f - >/dev/null
# Every namespace may read what the examples' generate.py writes (examples/*/README.md run them
# on this cluster); anything else outside a namespace's own prefix stays refused.
helm upgrade --install modelyard "${REPO_ROOT}/charts/modelyard" --namespace "${RELEASE_NAMESPACE}" \
  --set storage.endpoint="${S3_ENDPOINT}" --set storage.credentialsSecret=modelyard-s3 \
  --set-json 'storage.readableLocations={"*": ["s3://modelyard/examples/"]}' \
  --wait --timeout 5m

# --- quickstart -----------------------------------------------------------------------
step "kubectl apply -f examples/quickstart/ -n ${NAMESPACE}"
applied=$SECONDS
kubectl -n "${NAMESPACE}" apply -f "${REPO_ROOT}/examples/quickstart/"
phase() { kubectl -n "${NAMESPACE}" get "$1" -o jsonpath='{.status.phase}' 2>/dev/null; }
deadline=$((SECONDS + ${DEMO_TIMEOUT:-900}))
last=""
until [[ "$(phase modeldeployment/iris)" == Ready ]]; do
  ((SECONDS < deadline)) || { kubectl -n "${NAMESPACE}" get modelyard,jobs,pods; die "the quickstart did not become Ready"; }
  now="Dataset $(phase dataset/iris) → TrainingJob $(phase trainingjob/iris-classifier) → ModelDeployment $(phase modeldeployment/iris)"
  [[ "${now}" != "${last}" ]] && printf '  [%4ds] %s\n' "$((SECONDS - t_start))" "${now}"
  last="${now}"
  sleep 2
done
kubectl -n "${NAMESPACE}" get modelyard

get() { kubectl -n "${NAMESPACE}" get "$1" -o jsonpath="$2"; }
step "lineage"
echo "  dataset version  $(get dataset/iris '{.status.version}')  ($(get dataset/iris '{.status.rows}') rows)"
echo "  training run     $(get modeldeployment/iris '{.status.model.trainingJob}')/$(get modeldeployment/iris '{.status.model.run}')  accuracy=$(get trainingjob/iris-classifier '{.status.metrics.accuracy}')"
echo "  model digest     $(get modeldeployment/iris '{.status.model.digest}')"
echo "  URL              $(get modeldeployment/iris '{.status.url}')"

step "a prediction through the API server's service proxy"
proxy="/api/v1/namespaces/${NAMESPACE}/services/iris:http/proxy"
payload="$(mktemp)"
echo '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], "parameters": {"probabilities": true}}' >"${payload}"
echo "  POST ${proxy}/v1/models/iris:predict"
echo "  $(kubectl create --raw "${proxy}/v1/models/iris:predict" -f "${payload}")"
rm -f "${payload}"
echo "  (from kubectl apply to first prediction: $((SECONDS - applied))s)"

step "done in $((SECONDS - t_start))s"
if ${local_cluster}; then
  echo "Tear down: make cluster-down   (stops the cluster and the S3 server; the S3 data stays: make s3-wipe)"
else
  echo "Tear down: kubectl delete namespace ${NAMESPACE}; helm uninstall modelyard -n ${RELEASE_NAMESPACE}"
fi
