{{/* A `helm test` pod running files/helm-test.py with the operator image, locked down like the operator. Call with (list . "name suffix" (list "check" "args"...)). */}}
{{- define "modelyard.testPod" -}}
{{- $root := index . 0 -}}
apiVersion: v1
kind: Pod
metadata:
  name: {{ include "modelyard.fullname" $root }}-test-{{ index . 1 }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "modelyard.componentLabels" (list $root "test") | nindent 4 }}
  annotations:
    helm.sh/hook: test
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
    # The check's output in `helm test`'s own, since a succeeded pod is deleted at once.
    helm.sh/hook-output-log-policy: hook-succeeded,hook-failed
spec:
  restartPolicy: Never
  # It calls Services, never the API server.
  automountServiceAccountToken: false
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  containers:
    - name: check
      image: {{ include "modelyard.image" $root | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      command: ["python", "-c", {{ $root.Files.Get "files/helm-test.py" | quote }}]
      args:
        {{- range index . 2 }}
        - {{ . | quote }}
        {{- end }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      resources:
        requests:
          cpu: 10m
          memory: 32Mi
        limits:
          memory: 128Mi
      volumeMounts:
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
  {{- with $root.Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
