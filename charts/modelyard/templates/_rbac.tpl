{{/* Rules the operator needs in every namespace it watches. Least privilege: no wildcards, each verb one the operator or kopf calls (docs/security.md says which and why), on Secrets only create (a run on workers gets a Secret with its TLS material, deleted by garbage collection; workload pods reference Secrets by name, which needs no RBAC), nothing that reads one. */}}
{{- define "modelyard.namespacedRules" -}}
- apiGroups: ["modelyard.dev"]
  resources: ["datasets", "trainingjobs", "modeldeployments"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["modelyard.dev"]
  resources: ["datasets/status", "trainingjobs/status", "modeldeployments/status"]
  verbs: ["patch"]
- apiGroups: ["modelyard.dev"]
  resources: ["datasets/finalizers", "trainingjobs/finalizers", "modeldeployments/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["create"]
- apiGroups: ["kubernetes.dask.org"]
  resources: ["daskclusters"]
  verbs: ["get", "list", "create", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["replicasets"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["endpoints"]
  verbs: ["get"]
- apiGroups: ["discovery.k8s.io"]
  resources: ["endpointslices"]
  verbs: ["list"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list", "watch"]
{{- end }}

{{/* Peering rules: an operator of named namespaces peers through a KopfPeering in each of them (whether its RBAC is a ClusterRole or Roles), one of every namespace through the ClusterKopfPeering only. */}}
{{- define "modelyard.namespacedPeeringRules" -}}
{{- if include "modelyard.peering" . }}
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["list", "watch", "patch"]
{{- end }}
{{- end }}

{{- define "modelyard.clusterPeeringRules" -}}
{{- if include "modelyard.peering" . }}
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["list", "watch", "patch"]
{{- end }}
{{- end }}
