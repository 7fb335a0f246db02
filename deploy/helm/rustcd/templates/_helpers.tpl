{{/* The release's objects are named <release>-<chart> unless overridden (Helm's convention). */}}
{{- define "rustcd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rustcd.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "rustcd.headless" -}}
{{- printf "%s-headless" (include "rustcd.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rustcd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rustcd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rustcd.labels" -}}
{{ include "rustcd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "rustcd.image" -}}
{{- printf "%s:%s" .Values.image.repository (toString .Values.image.tag) -}}
{{- end -}}

{{- define "rustcd.clientScheme" -}}
{{- if .Values.auth.client.secureTransport -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{- define "rustcd.peerScheme" -}}
{{- if .Values.auth.peer.secureTransport -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* A member's stable DNS name: <pod>.<headless service>.<namespace>.svc.<domain>. */}}
{{- define "rustcd.memberHost" -}}
{{- printf "%s.%s.%s.svc.%s" .pod (include "rustcd.headless" .root) .root.Release.Namespace .root.Values.clusterDomain -}}
{{- end -}}

{{- define "rustcd.initialCluster" -}}
{{- $root := . -}}
{{- $members := list -}}
{{- range $i := until (int .Values.replicaCount) -}}
{{- $pod := printf "%s-%d" (include "rustcd.fullname" $root) $i -}}
{{- $host := include "rustcd.memberHost" (dict "pod" $pod "root" $root) -}}
{{- $members = append $members (printf "%s=%s://%s:%d" $pod (include "rustcd.peerScheme" $root) $host (int $root.Values.containerPorts.peer)) -}}
{{- end -}}
{{- join "," $members -}}
{{- end -}}

{{/* The client Service's URL, for the chart's own etcdctl Jobs. */}}
{{- define "rustcd.clientEndpoint" -}}
{{- printf "%s://%s.%s.svc.%s:%d" (include "rustcd.clientScheme" .) (include "rustcd.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.containerPorts.client) -}}
{{- end -}}

{{- define "rustcd.rootSecret" -}}
{{- if .Values.auth.rbac.existingSecret -}}
{{- .Values.auth.rbac.existingSecret -}}
{{- else -}}
{{- printf "%s-root" (include "rustcd.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Settings that ask for auth or TLS without what they need fail the render: never served without. */}}
{{- define "rustcd.validate" -}}
{{- if and .Values.auth.rbac.enabled (not .Values.auth.rbac.rootPassword) (not .Values.auth.rbac.existingSecret) -}}
{{- fail "auth.rbac.enabled needs auth.rbac.rootPassword or auth.rbac.existingSecret" -}}
{{- end -}}
{{- if and .Values.auth.client.secureTransport (not .Values.auth.client.existingSecret) -}}
{{- fail "auth.client.secureTransport needs auth.client.existingSecret (tls.crt, tls.key, ca.crt)" -}}
{{- end -}}
{{- if and .Values.auth.client.enableAuthentication (not .Values.auth.client.secureTransport) -}}
{{- fail "auth.client.enableAuthentication needs auth.client.secureTransport" -}}
{{- end -}}
{{- if and .Values.auth.peer.secureTransport (not .Values.auth.peer.existingSecret) -}}
{{- fail "auth.peer.secureTransport needs auth.peer.existingSecret (tls.crt, tls.key, ca.crt)" -}}
{{- end -}}
{{- if and .Values.auth.peer.enableAuthentication (not .Values.auth.peer.secureTransport) -}}
{{- fail "auth.peer.enableAuthentication needs auth.peer.secureTransport" -}}
{{- end -}}
{{- if and (eq .Values.auth.token.type "jwt") (not .Values.auth.token.privateKey.existingSecret) -}}
{{- fail "auth.token.type jwt needs auth.token.privateKey.existingSecret (jwt-token.pem, jwt-token.pub)" -}}
{{- end -}}
{{- if not (has .Values.auth.token.type (list "simple" "jwt")) -}}
{{- fail "auth.token.type is simple or jwt" -}}
{{- end -}}
{{- if lt (int .Values.replicaCount) 1 -}}
{{- fail "replicaCount must be at least 1" -}}
{{- end -}}
{{- end -}}

{{/* etcdctl's connection settings for the chart's Jobs: endpoint, CA, client certificate, root. */}}
{{- define "rustcd.etcdctlEnv" -}}
- name: ETCDCTL_API
  value: "3"
- name: ETCDCTL_ENDPOINTS
  value: {{ include "rustcd.clientEndpoint" . | quote }}
{{- if .Values.auth.client.secureTransport }}
- name: ETCDCTL_CACERT
  value: /etc/etcd/tls/client/ca.crt
{{- if .Values.auth.client.enableAuthentication }}
- name: ETCDCTL_CERT
  value: /etc/etcd/tls/client/tls.crt
- name: ETCDCTL_KEY
  value: /etc/etcd/tls/client/tls.key
{{- end }}
{{- end }}
{{- if .Values.auth.rbac.enabled }}
- name: ROOT_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "rustcd.rootSecret" . }}
      key: {{ .Values.auth.rbac.existingSecretPasswordKey }}
{{- end }}
{{- end -}}

{{/* The client TLS Secret as a volume and its mount (include only with client TLS on). */}}
{{- define "rustcd.clientTlsVolume" -}}
- name: client-tls
  secret:
    secretName: {{ .Values.auth.client.existingSecret }}
    defaultMode: 0440
{{- end -}}

{{- define "rustcd.clientTlsMount" -}}
- name: client-tls
  mountPath: /etc/etcd/tls/client
  readOnly: true
{{- end -}}
