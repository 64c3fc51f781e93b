{{/*
The pod spec of every pod of the chart: the worker's Deployment (`run`, with its port, probes
and grace period) and the one-off pods that run another command from the same image with the
same config, credentials and security settings (`doctor` as the chart's test, `replay-dlq` as a
Job). Called with (dict "root" $ "name" NAME "args" ARGS "worker" BOOL).
*/}}
{{- define "silentauth.podSpec" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $args := .args -}}
{{- $worker := .worker -}}
{{- with $root -}}
{{- $tls := .Values.credentials.kafka.tls -}}
{{- $sasl := .Values.credentials.kafka.sasl -}}
serviceAccountName: {{ include "silentauth.serviceAccountName" $root }}
automountServiceAccountToken: false
{{- if $worker }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
{{- else }}
restartPolicy: Never
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
containers:
  - name: {{ $name }}
    image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
    imagePullPolicy: {{ .Values.image.pullPolicy }}
    args:
      {{- toYaml $args | nindent 6 }}
    env:
      - name: RUST_LOG
        value: {{ .Values.logLevel | quote }}
      {{- range $name, $c := .Values.credentials.clients }}
      {{- $prefix := printf "SILENTAUTH__CLIENTS__%s__" (upper $name) }}
      - name: {{ $prefix }}CLIENT_SECRET
        valueFrom:
          secretKeyRef:
            name: {{ $c.existingSecret }}
            key: {{ $c.clientSecretKey }}
      - name: {{ $prefix }}API_KEY
        valueFrom:
          secretKeyRef:
            name: {{ $c.existingSecret }}
            key: {{ $c.apiKeyKey }}
      {{- end }}
      {{- if $sasl.existingSecret }}
      - name: SILENTAUTH__KAFKA__PROPERTIES__SASL_USERNAME
        valueFrom:
          secretKeyRef:
            name: {{ $sasl.existingSecret }}
            key: {{ $sasl.usernameKey }}
      - name: SILENTAUTH__KAFKA__PROPERTIES__SASL_PASSWORD
        valueFrom:
          secretKeyRef:
            name: {{ $sasl.existingSecret }}
            key: {{ $sasl.passwordKey }}
      {{- end }}
    {{- if $worker }}
    ports:
      - name: admin
        containerPort: {{ .Values.adminPort }}
        protocol: TCP
    startupProbe:
      httpGet:
        path: /healthz
        port: admin
      periodSeconds: 2
      failureThreshold: 60
    livenessProbe:
      httpGet:
        path: /healthz
        port: admin
      periodSeconds: 10
      timeoutSeconds: 2
      failureThreshold: 3
    readinessProbe:
      httpGet:
        path: /readyz
        port: admin
      periodSeconds: 5
      timeoutSeconds: 2
      failureThreshold: 2
    {{- end }}
    resources:
      {{- toYaml .Values.resources | nindent 6 }}
    securityContext:
      {{- toYaml .Values.securityContext | nindent 6 }}
    volumeMounts:
      - name: config
        mountPath: /etc/silentauth/config
        readOnly: true
      - name: tmp
        mountPath: /tmp
      {{- if $tls.existingSecret }}
      - name: kafka-tls
        mountPath: {{ include "silentauth.tlsDir" . }}
        readOnly: true
      {{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "silentauth.fullname" . }}
  - name: tmp
    emptyDir:
      sizeLimit: 16Mi
  {{- if $tls.existingSecret }}
  - name: kafka-tls
    secret:
      secretName: {{ $tls.existingSecret }}
      # 0440: readable by the worker's group (fsGroup) only.
      defaultMode: 288
      items:
        {{- range $key := list $tls.caKey $tls.certKey $tls.keyKey | compact | uniq }}
        - key: {{ $key }}
          path: {{ $key }}
        {{- end }}
  {{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
{{- end -}}
