{{/*
Names are fixed, as in deploy/base: the webhook configurations, admission policies and ClusterRole are cluster-wide
singletons, and their names are part of the contract (cert-manager's inject-ca-from, docs). One release per cluster.
*/}}
{{- define "apeiro-cmk.name" -}}apeiro-cmk-webhook{{- end -}}

{{/* Labels every object carries; the selector labels stay exactly those of deploy/base. */}}
{{- define "apeiro-cmk.labels" -}}
app.kubernetes.io/name: apeiro-cmk-webhook
app.kubernetes.io/part-of: apeiro-cmk
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Helm's bookkeeping labels only: for the objects deploy/overlays adds outside the base's label set. */}}
{{- define "apeiro-cmk.toolLabels" -}}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels of objects that are not the webhook's own (CRDs): no app.kubernetes.io/name. */}}
{{- define "apeiro-cmk.commonLabels" -}}
app.kubernetes.io/part-of: apeiro-cmk
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "apeiro-cmk.selectorLabels" -}}
app.kubernetes.io/name: apeiro-cmk-webhook
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "apeiro-cmk.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The webhook's own service account, a bypass user: its controllers manage finalizers and status of our kinds. */}}
{{- define "apeiro-cmk.serviceAccountUser" -}}
system:serviceaccount:{{ .Release.Namespace }}:apeiro-cmk-webhook
{{- end -}}

{{- define "apeiro-cmk.kubernetesMode" -}}
{{- if eq .Values.mode "kubernetes" }}true{{ end -}}
{{- end -}}

{{/*
clientConfig of one webhook: the Service (in-cluster) or webhook.url + path (out-of-cluster). The caBundle comes
from certificates.static.caCrt in static mode; cert-manager's cainjector fills it otherwise.
*/}}
{{- define "apeiro-cmk.clientConfig" -}}
{{- $root := index . 0 -}}
{{- $path := index . 1 -}}
clientConfig:
{{- if $root.Values.webhook.url }}
  url: {{ printf "%s%s" (trimSuffix "/" $root.Values.webhook.url) $path | quote }}
{{- else }}
  service:
    name: apeiro-cmk-webhook
    namespace: {{ $root.Release.Namespace }}
    path: {{ $path }}
    port: 443
{{- end }}
{{- if eq $root.Values.certificates.mode "static" }}
  caBundle: {{ $root.Values.certificates.static.caCrt | b64enc }}
{{- end }}
{{- end -}}

{{/* namespaceSelector that keeps the webhook from being called for objects in its own namespace. */}}
{{- define "apeiro-cmk.notOwnNamespace" -}}
namespaceSelector:
  matchExpressions:
    # Never call ourselves for objects in our own namespace (no tenant lives there; see own-namespace-policy.yaml).
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: [{{ .Release.Namespace | quote }}]
{{- end -}}

{{/* The rendered plugin profile (CMK plugins: format), or nothing for the embedded apeiro-profile. */}}
{{- define "apeiro-cmk.profile" -}}
{{- if .Values.plugins.profile }}
plugins:
{{- range .Values.plugins.profile }}
  - name: {{ .name | quote }}
    type: {{ .type | quote }}
    {{- if eq $.Values.plugins.mode "external" }}
    path: {{ printf "%s/%s" (trimSuffix "/" $.Values.plugins.dir) (required (printf "plugins.profile: entry %s/%s needs binary in external mode" .name .type) .binary) | quote }}
    {{- with .args }}
    {{- /* Arguments go to the plugin process; a builtin takes none (the profile loader refuses them). */}}
    args: {{ toJson . }}
    {{- end }}
    {{- end }}
    {{- with .tags }}
    tags: {{ toJson . }}
    {{- end }}
    {{- with .yamlConfiguration }}
    yamlConfiguration: |
{{ . | trimSuffix "\n" | indent 6 }}
    {{- end }}
{{- end }}
{{- end }}
{{- end -}}
