{{/* Rules the operator needs in every namespace it watches. Least privilege: no wildcards, nothing on Secrets (workload pods reference Secrets by name, which needs no RBAC). */}}
{{- define "modelyard.namespacedRules" -}}
- apiGroups: ["modelyard.dev"]
  resources: ["datasets", "trainingjobs", "modeldeployments"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["modelyard.dev"]
  resources: ["datasets/status", "trainingjobs/status", "modeldeployments/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["modelyard.dev"]
  resources: ["datasets/finalizers", "trainingjobs/finalizers", "modeldeployments/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if include "modelyard.peering" . }}
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}

{{/* Rules only a cluster-wide operator needs: kopf lists namespaces and discovers CRDs. */}}
{{- define "modelyard.clusterRules" -}}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- if include "modelyard.peering" . }}
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}
