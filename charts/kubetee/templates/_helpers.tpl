{{/* Names, labels and shared snippets of the KubeTEE chart. */}}

{{- define "kubetee.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: the release name, followed by the chart name unless the
release name already contains it. Kept to 40 characters so "-metrics-apiserver" and the
like still fit in 63.
*/}}
{{- define "kubetee.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kubetee.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource; include with (dict "ctx" $ "component" "operator"). */}}
{{- define "kubetee.labels" -}}
helm.sh/chart: {{ include "kubetee.chart" .ctx }}
{{ include "kubetee.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: kubetee
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The labels a component's Service and workload select its pods by. */}}
{{- define "kubetee.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetee.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/* Name of a component's resources: (dict "ctx" $ "component" "operator"). */}}
{{- define "kubetee.componentName" -}}
{{- printf "%s-%s" (include "kubetee.fullname" .ctx) .component }}
{{- end }}

{{/* The kubetee image reference: repository with the digest, else the tag (appVersion). */}}
{{- define "kubetee.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "kubetee.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* In-cluster DNS name of the attestation service. */}}
{{- define "kubetee.attestation.host" -}}
{{- printf "%s.%s.svc" (include "kubetee.componentName" (dict "ctx" . "component" "attestation")) .Release.Namespace }}
{{- end }}

{{/* URL runtimes reach the attestation service at. */}}
{{- define "kubetee.attestation.url" -}}
{{- printf "https://%s:%d" (include "kubetee.attestation.host" .) (int .Values.attestationService.port) }}
{{- end }}

{{/* Secret with the attestation service's serving certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "kubetee.attestation.tlsSecret" -}}
{{- default (printf "%s-tls" (include "kubetee.componentName" (dict "ctx" . "component" "attestation"))) .Values.attestationService.tls.existingSecret }}
{{- end }}

{{/* In-cluster DNS name of the metrics API server. */}}
{{- define "kubetee.metrics.host" -}}
{{- printf "%s.%s.svc" (include "kubetee.componentName" (dict "ctx" . "component" "metrics-apiserver")) .Release.Namespace }}
{{- end }}

{{/*
A CA and a serving certificate for a Service, generated once and kept across upgrades:
an existing Secret of that name is reused as it is. Returns YAML with ca.crt, tls.crt and
tls.key (PEM), base64-encoded as Secret data.
Call with (dict "ctx" $ "secret" NAME "hosts" LIST "cn" NAME "days" VALIDITY).
*/}}
{{- define "kubetee.servingCertificate" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .secret }}
{{- if and $existing $existing.data (index $existing.data "tls.crt") }}
ca.crt: {{ index $existing.data "ca.crt" }}
tls.crt: {{ index $existing.data "tls.crt" }}
tls.key: {{ index $existing.data "tls.key" }}
{{- else }}
{{- $days := int .days }}
{{- $ca := genCA (printf "%s CA" .cn) $days }}
{{- $cert := genSignedCert .cn nil .hosts $days $ca }}
ca.crt: {{ $ca.Cert | b64enc }}
tls.crt: {{ $cert.Cert | b64enc }}
tls.key: {{ $cert.Key | b64enc }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by the Deployments: (dict "ctx" $ "values" .Values.x). */}}
{{- define "kubetee.podPlacement" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end }}

{{/* The `from` of a NetworkPolicy rule admitting metrics scrapes (none: anyone). */}}
{{- define "kubetee.metricsPeers" -}}
{{- with .Values.networkPolicy.metricsFrom }}
from:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* In-cluster DNS name and URL of the simulated PCS. */}}
{{- define "kubetee.pcs.host" -}}
{{- printf "%s.%s.svc" (include "kubetee.componentName" (dict "ctx" . "component" "pcs")) .Release.Namespace }}
{{- end }}

{{- define "kubetee.pcs.url" -}}
{{- printf "https://%s:%d" (include "kubetee.pcs.host" .) (int .Values.pcs.port) }}
{{- end }}

{{/* ConfigMap with the CA (ca.crt) of the simulated PCS's serving certificate. */}}
{{- define "kubetee.pcs.caConfigMap" -}}
{{- printf "%s-ca" (include "kubetee.componentName" (dict "ctx" . "component" "pcs")) }}
{{- end }}

{{/* The platform registry the attestation service reads, as [NAMESPACE/]NAME. */}}
{{- define "kubetee.pcs.registry" -}}
{{- default (printf "%s/%s" .Release.Namespace .Values.pcs.registry) .Values.attestationService.trust.platformRegistry }}
{{- end }}
