{{/* Name of the chart, overridable. */}}
{{- define "modelyard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: the release name, with the chart's unless it already holds it. */}}
{{- define "modelyard.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "modelyard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the operator. */}}
{{- define "modelyard.labels" -}}
{{ include "modelyard.componentLabels" (list . "operator") }}
{{- end }}

{{/* The same labels for the chart's other parts, named by their component. Call with (list . "component"). */}}
{{- define "modelyard.componentLabels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "modelyard.chart" $root }}
app.kubernetes.io/name: {{ include "modelyard.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: modelyard
{{- end }}

{{/* Labels that select the operator pod. */}}
{{- define "modelyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "modelyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "modelyard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "modelyard.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "modelyard.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "modelyard.image" -}}
{{- printf "%s:%s" .Values.image.repository (include "modelyard.tag" .) }}
{{- end }}

{{/* A workload image: the explicit value, else the sibling of the operator's repository, else nothing (the operator's own default). Call with (list . "trainer" .Values.workloads.trainerImage). */}}
{{- define "modelyard.workloadImage" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $explicit := index . 2 }}
{{- if $explicit }}
{{- $explicit }}
{{- else if hasSuffix "/operator" $root.Values.image.repository }}
{{- printf "%s/%s:%s" (trimSuffix "/operator" $root.Values.image.repository) $component (include "modelyard.tag" $root) }}
{{- end }}
{{- end }}

{{/* "true" when kopf peering is on: asked for, or needed by more than one replica. */}}
{{- define "modelyard.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* Refuse combinations that would install an operator that cannot work. */}}
{{- define "modelyard.validate" -}}
{{- if and (not .Values.rbac.clusterWide) (empty .Values.watchNamespaces) }}
{{- fail "rbac.clusterWide=false needs watchNamespaces: the namespaces to create a Role and RoleBinding in" }}
{{- end }}
{{- end }}
