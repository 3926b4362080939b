{{/*
Names. Every object is named after the release (fullnameOverride replaces it): a release
"sentry" gives exactly the names of k8s-cronjob.yaml (sentry, sentry-config, sentry-tokens,
sentry-state). 52 characters at most: a CronJob's name is the prefix of its Jobs' names.
*/}}
{{- define "sentry.fullname" -}}
{{- $name := default .Release.Name .Values.fullnameOverride -}}
{{- if gt (len $name) 52 -}}
{{- fail (printf "the name %q is longer than 52 characters (a CronJob's Jobs add 11): choose a shorter release name or fullnameOverride" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/* Labels of every object. Only app.kubernetes.io/name is in k8s-cronjob.yaml too. */}}
{{- define "sentry.labels" -}}
app.kubernetes.io/name: sentry
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | quote }}
{{- end -}}

{{/* Labels of the Jobs and pods (no version: they outlive an upgrade for a while). */}}
{{- define "sentry.podLabels" -}}
app.kubernetes.io/name: sentry
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{- define "sentry.serviceAccountName" -}}
{{- default (include "sentry.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "sentry.tokensSecretName" -}}
{{- default (printf "%s-tokens" (include "sentry.fullname" .)) .Values.tokens.existingSecret -}}
{{- end -}}

{{/* The number of shards, as an integer (values may come in as floats). */}}
{{- define "sentry.shards" -}}
{{- int .Values.shards -}}
{{- end -}}

{{/*
The state location passed to `--state` and written into global.state: one ConfigMap, or with
shards one per shard, "{shard}" being replaced by sentry with the shard's index (SPEC §1).
*/}}
{{- define "sentry.stateLocation" -}}
{{- if gt (int .Values.shards) 1 -}}
configmap:{{ include "sentry.fullname" . }}-state-{shard}
{{- else -}}
configmap:{{ include "sentry.fullname" . }}-state
{{- end -}}
{{- end -}}

{{/* The state ConfigMaps' names, as a JSON list (fromJsonArray). */}}
{{- define "sentry.stateNames" -}}
{{- $fullname := include "sentry.fullname" . -}}
{{- $names := list -}}
{{- if gt (int .Values.shards) 1 -}}
{{- range $i := until (int .Values.shards) -}}
{{- $names = append $names (printf "%s-state-%d" $fullname $i) -}}
{{- end -}}
{{- else -}}
{{- $names = list (printf "%s-state" $fullname) -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{- define "sentry.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The configuration sentry reads: .Values.config with global.state set to the state location
(the same as the CronJob's --state, so `sentry status` in a debug pod agrees) and, when
metrics.pushgatewayUrl is set, global.pushgateway_url.
*/}}
{{- define "sentry.config" -}}
{{- $config := deepCopy (default (dict) .Values.config) -}}
{{- $global := deepCopy (default (dict) (get $config "global")) -}}
{{- if hasKey $global "state" -}}
{{- fail "config.global.state is set by the chart (the state ConfigMap it creates, one per shard): remove it from config" -}}
{{- end -}}
{{- $_ := set $global "state" (include "sentry.stateLocation" .) -}}
{{- with .Values.metrics.pushgatewayUrl -}}
{{- $set := get $global "pushgateway_url" -}}
{{- if and $set (ne $set .) -}}
{{- fail "config.global.pushgateway_url and metrics.pushgatewayUrl differ: set only metrics.pushgatewayUrl" -}}
{{- end -}}
{{- $_ := set $global "pushgateway_url" . -}}
{{- end -}}
{{- $_ := set $config "global" $global -}}
{{- toYaml $config -}}
{{- end -}}
