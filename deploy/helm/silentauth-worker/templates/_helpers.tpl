{{/* Names and labels. */}}
{{- define "silentauth.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "silentauth.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The worker's pods; the one-off pods (doctor, replay-dlq) carry another component, so the
Deployment, the Service and the PodDisruptionBudget never take them for workers. */}}
{{- define "silentauth.workerSelectorLabels" -}}
{{ include "silentauth.selectorLabels" . }}
app.kubernetes.io/component: worker
{{- end -}}

{{- define "silentauth.labels" -}}
{{ include "silentauth.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "silentauth.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "silentauth.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Where the Kafka TLS Secret is mounted. */}}
{{- define "silentauth.tlsDir" -}}/etc/silentauth/kafka-tls{{- end -}}

{{/*
The Kafka security the credentials ask for: security.protocol, sasl.mechanism and the
ssl.*.location paths, as a dict of librdkafka properties.
*/}}
{{- define "silentauth.kafkaSecurityProperties" -}}
{{- $sasl := .Values.credentials.kafka.sasl -}}
{{- $tls := .Values.credentials.kafka.tls -}}
{{- $p := dict -}}
{{- if and $sasl.existingSecret $tls.existingSecret -}}
{{- $_ := set $p "security.protocol" "SASL_SSL" -}}
{{- else if $tls.existingSecret -}}
{{- $_ := set $p "security.protocol" "SSL" -}}
{{- else if $sasl.existingSecret -}}
{{- $_ := set $p "security.protocol" "SASL_PLAINTEXT" -}}
{{- end -}}
{{- if $sasl.existingSecret -}}
{{- $_ := set $p "sasl.mechanism" $sasl.mechanism -}}
{{- end -}}
{{- if $tls.existingSecret -}}
{{- $dir := include "silentauth.tlsDir" . -}}
{{- if $tls.caKey -}}
{{- $_ := set $p "ssl.ca.location" (printf "%s/%s" $dir $tls.caKey) -}}
{{- end -}}
{{- if $tls.certKey -}}
{{- $_ := set $p "ssl.certificate.location" (printf "%s/%s" $dir $tls.certKey) -}}
{{- $_ := set $p "ssl.key.location" (printf "%s/%s" $dir $tls.keyKey) -}}
{{- end -}}
{{- end -}}
{{- toJson $p -}}
{{- end -}}

{{/* The configuration the worker loads: values.config, the Kafka security and admin.listen. */}}
{{- define "silentauth.config" -}}
{{- $config := deepCopy (.Values.config | default dict) -}}
{{- $kafka := get $config "kafka" | default dict -}}
{{- $props := get $kafka "properties" | default dict -}}
{{- $derived := include "silentauth.kafkaSecurityProperties" . | fromJson -}}
{{- $_ := set $kafka "properties" (merge $props $derived) -}}
{{- $_ := set $config "kafka" $kafka -}}
{{- $admin := get $config "admin" | default dict -}}
{{- $_ := set $admin "listen" (printf "0.0.0.0:%d" (int .Values.adminPort)) -}}
{{- $_ := set $config "admin" $admin -}}
{{- toJson $config -}}
{{- end -}}

{{/* A TOML key: bare when it can be, quoted otherwise. */}}
{{- define "silentauth.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{/* A TOML value; whole numbers are written as integers (Helm reads every number as a float). */}}
{{- define "silentauth.toml.value" -}}
{{- $v := .value -}}
{{- if kindIs "string" $v -}}
{{- toJson $v -}}
{{- else if kindIs "bool" $v -}}
{{- $v -}}
{{- else if or (kindIs "float64" $v) (kindIs "float32" $v) -}}
{{- if eq (float64 (int64 $v)) (float64 $v) -}}{{ int64 $v }}{{- else -}}{{ $v }}{{- end -}}
{{- else if or (kindIs "int" $v) (kindIs "int64" $v) (kindIs "uint64" $v) -}}
{{- $v -}}
{{- else if kindIs "slice" $v -}}
[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "silentauth.toml.value" (dict "value" $e "key" $.key) }}{{ end }}]
{{- else -}}
{{- fail (printf "config.%s: %v is neither a string, a number, a boolean nor a list" .key $v) -}}
{{- end -}}
{{- end -}}

{{/* A TOML table: its values, then its sub-tables under [path.key] (a header only for a table with values of its own). */}}
{{- define "silentauth.toml.table" -}}
{{- $path := .path -}}
{{- $table := .table -}}
{{- range $k, $v := $table }}
{{- if not (kindIs "map" $v) }}
{{ include "silentauth.toml.key" $k }} = {{ include "silentauth.toml.value" (dict "value" $v "key" (join "." (append $path $k))) }}
{{- end }}
{{- end }}
{{- range $k, $v := $table }}
{{- if kindIs "map" $v }}
{{- $sub := append $path $k }}
{{- $header := list }}
{{- range $sub }}{{ $header = append $header (include "silentauth.toml.key" .) }}{{ end }}
{{- $scalars := false }}
{{- range $v }}{{ if not (kindIs "map" .) }}{{ $scalars = true }}{{ end }}{{ end }}
{{- if $scalars }}

[{{ join "." $header }}]
{{- end }}
{{- include "silentauth.toml.table" (dict "path" $sub "table" $v) }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
A duration as the worker writes it ("30s", "2m", "1h 30m", "250ms") in milliseconds; fails
naming the value when the chart cannot read it.
*/}}
{{- define "silentauth.durationMs" -}}
{{- $units := dict "ms" 1 "msec" 1 "s" 1000 "sec" 1000 "secs" 1000 "second" 1000 "seconds" 1000 "m" 60000 "min" 60000 "mins" 60000 "minute" 60000 "minutes" 60000 "h" 3600000 "hr" 3600000 "hrs" 3600000 "hour" 3600000 "hours" 3600000 "d" 86400000 "day" 86400000 "days" 86400000 -}}
{{- $s := toString .value | trim -}}
{{- if not (regexMatch "^([0-9]+ *[a-z]+ *)+$" $s) -}}
{{- fail (printf "%s = %q: not a duration the chart can read (write it like \"30s\", \"2m\" or \"1m 30s\")" .key $s) -}}
{{- end -}}
{{- $total := 0 -}}
{{- range regexFindAll "[0-9]+ *[a-z]+" $s -1 -}}
{{- $unit := regexFind "[a-z]+" . -}}
{{- if not (hasKey $units $unit) -}}
{{- fail (printf "%s = %q: unit %q is not one the chart can read (ms, s, m, h, d)" $.key $s $unit) -}}
{{- end -}}
{{- $total = add $total (mul (regexFind "[0-9]+" . | int64) (get $units $unit)) -}}
{{- end -}}
{{- $total -}}
{{- end -}}

{{/*
Render-time checks: each failure names the value to change. Included by the Deployment.
*/}}
{{- define "silentauth.validate" -}}
{{- $v := .Values -}}
{{- $partitions := int $v.jobsPartitions -}}
{{- if lt $partitions 1 -}}
{{- fail "jobsPartitions must be the partition count of config.topics.jobs (>= 1)" -}}
{{- end -}}
{{- if gt (int $v.replicaCount) $partitions -}}
{{- fail (printf "replicaCount (%d) is more than jobsPartitions (%d): a consumer beyond the jobs topic's partition count gets no partition and idles; lower replicaCount or raise jobsPartitions after adding partitions" (int $v.replicaCount) $partitions) -}}
{{- end -}}
{{- if $v.autoscaling.enabled -}}
{{- $max := int (default $partitions $v.autoscaling.maxReplicaCount) -}}
{{- if gt $max $partitions -}}
{{- fail (printf "autoscaling.maxReplicaCount (%d) is more than jobsPartitions (%d): replicas beyond the jobs topic's partition count get no partition and idle; lower autoscaling.maxReplicaCount" $max $partitions) -}}
{{- end -}}
{{- if gt (int $v.autoscaling.minReplicaCount) $max -}}
{{- fail (printf "autoscaling.minReplicaCount (%d) is more than autoscaling.maxReplicaCount (%d)" (int $v.autoscaling.minReplicaCount) $max) -}}
{{- end -}}
{{- if lt (int $v.autoscaling.lagThreshold) 1 -}}
{{- fail "autoscaling.lagThreshold must be >= 1" -}}
{{- end -}}
{{- end -}}
{{- $worker := get ($v.config | default dict) "worker" | default dict -}}
{{- $grace := get $worker "shutdown_grace" | default "30s" -}}
{{- $graceMs := include "silentauth.durationMs" (dict "key" "config.worker.shutdown_grace" "value" $grace) | int64 -}}
{{- $tgps := int64 $v.terminationGracePeriodSeconds -}}
{{- if ge $graceMs (mul $tgps 1000) -}}
{{- fail (printf "config.worker.shutdown_grace (%s) must be shorter than terminationGracePeriodSeconds (%d s): the kubelet kills the worker then, cutting its shutdown short; raise terminationGracePeriodSeconds above it (with a few seconds for publishing and committing) or lower config.worker.shutdown_grace" $grace $tgps) -}}
{{- end -}}
{{- include "silentauth.validateNoInlineSecrets" . -}}
{{- end -}}

{{- define "silentauth.validateNoInlineSecrets" -}}
{{- $v := .Values -}}
{{- $config := $v.config | default dict -}}
{{- $hint := "Secrets are not taken from values: put it in a Kubernetes Secret and name the Secret under credentials (docs/kubernetes.md)" -}}
{{- $clients := get $config "clients" | default dict -}}
{{- range $name, $profile := $clients -}}
{{- range $field := list "client_secret" "api_key" -}}
{{- if hasKey ($profile | default dict) $field -}}
{{- fail (printf "config.clients.%s.%s is set inline. %s: credentials.clients.%s.existingSecret" $name $field $hint $name) -}}
{{- end -}}
{{- end -}}
{{- $creds := get $v.credentials.clients $name -}}
{{- if not (and $creds $creds.existingSecret) -}}
{{- fail (printf "config.clients.%s has no credentials: set credentials.clients.%s.existingSecret (with clientSecretKey and apiKeyKey)" $name $name) -}}
{{- end -}}
{{- end -}}
{{- range $name, $_ := $v.credentials.clients -}}
{{- if not (hasKey $clients $name) -}}
{{- fail (printf "credentials.clients.%s names a profile that config.clients does not have: add config.clients.%s.client_id" $name $name) -}}
{{- end -}}
{{- end -}}
{{- $props := get (get $config "kafka" | default dict) "properties" | default dict -}}
{{- range $name, $_ := $props -}}
{{- $n := lower $name -}}
{{- $secret := or (regexMatch "password|secret|token|jaas|key" $n) (eq $n "sasl.oauthbearer.config") -}}
{{- $path := or (hasSuffix ".location" $n) (eq $n "sasl.kerberos.keytab") -}}
{{- if and $secret (not $path) -}}
{{- fail (printf "config.kafka.properties.%q holds a secret and is set inline. %s: credentials.kafka.sasl or credentials.kafka.tls" $name $hint) -}}
{{- end -}}
{{- end -}}
{{- $api := get $config "api" | default dict -}}
{{- range $key := list "base_url" "signals_base_url" -}}
{{- if regexMatch "://[^/@]*:[^/@]*@" (get $api $key | default "" | toString) -}}
{{- fail (printf "config.api.%s has a password in it. %s" $key $hint) -}}
{{- end -}}
{{- end -}}
{{- if and $v.credentials.kafka.tls.existingSecret (ne (empty $v.credentials.kafka.tls.certKey) (empty $v.credentials.kafka.tls.keyKey)) -}}
{{- fail "credentials.kafka.tls.certKey and credentials.kafka.tls.keyKey go together (mutual TLS): set both or neither" -}}
{{- end -}}
{{- end -}}

{{/* Where the worker reads its configuration (the ConfigMap's worker.toml). */}}
{{- define "silentauth.configPath" -}}/etc/silentauth/config/worker.toml{{- end -}}
