{{/* Names and labels, as `helm create` writes them. */}}
{{- define "kubelogs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubelogs.fullname" -}}
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

{{- define "kubelogs.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "kubelogs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubelogs
{{- end }}

{{- define "kubelogs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubelogs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kubelogs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kubelogs.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kubelogs.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The store: "<fullname>-opensearch" or "<fullname>-elasticsearch"; its client Service
     (the coordinating nodes) has that name, the dashboards "<store>-dashboards". */}}
{{- define "kubelogs.store" -}}
{{- printf "%s-%s" (include "kubelogs.fullname" .) .Values.store.type | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "kubelogs.storeUrl" -}}
{{- printf "http://%s.%s.svc:9200" (include "kubelogs.store" .) .Release.Namespace }}
{{- end }}

{{- define "kubelogs.dashboardsUrl" -}}
{{- printf "http://%s-dashboards.%s.svc:5601" (include "kubelogs.store" .) .Release.Namespace }}
{{- end }}

{{/* The agent's kubelogs config: the user's sources/transforms/sinks, the chart's paths.
     Without a disk buffer (not in kubelogs yet) an unreachable store holds the reading
     back: the node's log files are the buffer, and nothing is dropped. */}}
{{- define "kubelogs.agentConfig" -}}
{{- $cfg := deepCopy .Values.agent.config }}
{{- $sinks := $cfg.sinks | default dict }}
{{- if not $sinks }}
{{- if .Values.store.type }}
{{- $_ := set $sinks "store" (dict
      "type" "elasticsearch"
      "inputs" .Values.agent.defaultSinkInputs
      "hosts" (list (include "kubelogs.storeUrl" .))
      "index" .Values.store.index
      "api_version" (ternary "opensearch" "auto" (eq .Values.store.type "opensearch"))) }}
{{- else }}
{{- $_ := set $sinks "store" (dict "type" "local" "inputs" .Values.agent.defaultSinkInputs) }}
{{- end }}
{{- end }}
{{- $_ := set $cfg "sinks" $sinks }}
{{- $_ := set $cfg "data_dir" .Values.agent.dataDir }}
{{- $_ := set $cfg "api" (dict "listen" (printf "0.0.0.0:%d" (int .Values.agent.apiPort))) }}
{{- $_ := set $cfg "shutdown_grace_period" (printf "%ds" (int .Values.agent.shutdownGracePeriodSeconds)) }}
{{- toYaml $cfg }}
{{- end }}
