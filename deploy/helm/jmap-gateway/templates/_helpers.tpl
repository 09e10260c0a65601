{{/* Names and labels. */}}
{{- define "jmap-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jmap-gateway.fullname" -}}
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

{{- define "jmap-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "jmap-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jmap-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "jmap-gateway.labels" -}}
helm.sh/chart: {{ include "jmap-gateway.chart" . }}
{{ include "jmap-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "jmap-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "jmap-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "jmap-gateway.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Secret holding GATEWAY_SECRET and GATEWAY_REDIS_URL: the operator's, or the chart's. */}}
{{- define "jmap-gateway.secretName" -}}
{{- default (include "jmap-gateway.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/*
Fails the render unless both secret settings have a source. GATEWAY_SECRET is never generated:
Helm would make a new one on every upgrade, and a new secret changes every account id.
*/}}
{{- define "jmap-gateway.checkSecrets" -}}
{{- if not .Values.secrets.existingSecret }}
{{- if not .Values.secrets.gatewaySecret }}
{{- fail "secrets.gatewaySecret (GATEWAY_SECRET) is required, or secrets.existingSecret naming a Secret that holds it: account ids are derived from it, so it must be set once and never change (make one with `openssl rand -hex 32`)" }}
{{- end }}
{{- if not .Values.secrets.redisUrl }}
{{- fail "secrets.redisUrl (GATEWAY_REDIS_URL, e.g. redis://:password@redis:6379/0) is required, or secrets.existingSecret naming a Secret that holds it" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Fails the render if a terminating pod would be killed before its push streams end, in-flight
requests can finish and its upstream connections say LOGOUT. Push streams get
config.pushDrainSeconds first (GATEWAY_PUSH_DRAIN_SECONDS, default 5), then requests the shutdown
timeout. After the shutdown timeout the gateway needs up to 10 s
more: 2 s for connections still lent out to come back, and up to 4 s per LOGOUT round (the
command and the socket's close, 2 s each) for idle and returned connections.
*/}}
{{- define "jmap-gateway.checkGracePeriod" -}}
{{- $drain := 5 }}
{{- if not (kindIs "invalid" .Values.config.pushDrainSeconds) }}
{{- $drain = ceil .Values.config.pushDrainSeconds | int }}
{{- end }}
{{- $needed := add (int .Values.preStopSleepSeconds) $drain (int .Values.config.shutdownTimeoutSeconds) 10 }}
{{- if lt (int .Values.terminationGracePeriodSeconds) (int $needed) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be at least preStopSleepSeconds + config.pushDrainSeconds (default 5) + config.shutdownTimeoutSeconds + 10 (%d): the kubelet would kill pods before push streams end, in-flight requests finish and upstream connections are logged out" (int .Values.terminationGracePeriodSeconds) (int $needed)) }}
{{- end }}
{{- end }}

{{/* Fails the render on port settings the gateway would refuse at start-up. */}}
{{- define "jmap-gateway.checkPorts" -}}
{{- if eq (int .Values.config.metricsPort) (int .Values.config.port) }}
{{- fail "config.metricsPort must differ from config.port (the gateway refuses to start otherwise)" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not (include "jmap-gateway.metricsEnabled" .)) }}
{{- fail "metrics.serviceMonitor.enabled needs config.metricsPort (0 turns the metrics endpoint off)" }}
{{- end }}
{{- end }}

{{/* "true" when the gateway serves /metrics (config.metricsPort 0 turns it off), else empty. */}}
{{- define "jmap-gateway.metricsEnabled" -}}
{{- if gt (int .Values.config.metricsPort) 0 }}true{{ end }}
{{- end }}

{{/*
A value as the gateway reads it: Helm holds numbers as float64, which would print 50000000 as
"5e+07"; whole numbers are printed as integers.
*/}}
{{- define "jmap-gateway.envValue" -}}
{{- $v := . }}
{{- if and (kindIs "float64" $v) (eq $v (floor $v)) }}
{{- int64 $v }}
{{- else }}
{{- $v }}
{{- end }}
{{- end }}

{{/* The CA bundle's path inside the container, when upstreamCa names a source. */}}
{{- define "jmap-gateway.upstreamCaPath" -}}
{{- if or .Values.upstreamCa.configMap .Values.upstreamCa.secret }}
{{- printf "/etc/jmap-gateway/upstream-ca/%s" .Values.upstreamCa.key }}
{{- end }}
{{- end }}

{{/* The port of an upstream URL: the explicit one, else the scheme's default. */}}
{{- define "jmap-gateway.urlPort" -}}
{{- $url := urlParse .url }}
{{- $explicit := regexFind ":[0-9]+$" $url.host }}
{{- if $explicit }}
{{- trimPrefix ":" $explicit }}
{{- else }}
{{- get .defaults $url.scheme }}
{{- end }}
{{- end }}
