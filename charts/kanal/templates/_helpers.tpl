{{/* Names and labels. */}}
{{- define "kanal.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kanal.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "ingress") */}}
{{- define "kanal.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kanal.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "kanal.ingressUrl" -}}
{{- if .Values.config.ingressUrl -}}
{{- .Values.config.ingressUrl -}}
{{- else -}}
{{- $base := printf "http://%s-ingress.%s.svc.cluster.local" (include "kanal.fullname" .) .Release.Namespace -}}
{{- if eq (int .Values.ingress.service.port) 80 -}}
{{- $base -}}
{{- else -}}
{{- printf "%s:%d" $base (int .Values.ingress.service.port) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the admin API's bearer token: the user's, or the one the chart makes. */}}
{{- define "kanal.controllerTokenSecret" -}}
{{- .Values.controller.token.existingSecret | default (printf "%s-controller-token" (include "kanal.fullname" .)) -}}
{{- end -}}

{{- define "kanal.controllerUrl" -}}
{{- printf "http://%s-controller:%v" (include "kanal.fullname" .) .Values.config.controllerPort -}}
{{- end -}}

{{/* Environment shared by every component: settings from the ConfigMap, Kafka secrets. */}}
{{- define "kanal.env" -}}
- name: KANAL_HOST
  value: "0.0.0.0"
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
- name: KANAL_INGRESS_URL
  value: {{ include "kanal.ingressUrl" . | quote }}
- name: KANAL_CONTROLLER_URL
  value: {{ include "kanal.controllerUrl" . | quote }}
{{- if .Values.kafka.sasl.existingSecret }}
- name: KANAL_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: KANAL_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.kafka.sasl.existingSecret }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- if .Values.kafka.tls.existingSecret }}
- name: KANAL_KAFKA_SSL_CAFILE
  value: /etc/kanal/kafka-tls/{{ .Values.kafka.tls.caKey }}
{{- if .Values.kafka.tls.clientCertificate }}
- name: KANAL_KAFKA_SSL_CERTFILE
  value: /etc/kanal/kafka-tls/{{ .Values.kafka.tls.certKey }}
- name: KANAL_KAFKA_SSL_KEYFILE
  value: /etc/kanal/kafka-tls/{{ .Values.kafka.tls.keyKey }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "kanal.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.existingSecret }}
{{- end }}
{{- end -}}

{{- define "kanal.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/kanal/kafka-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/*
One component's Deployment: (dict "root" $ "component" "ingress" "values" .Values.ingress
"port" .Values.config.ingressPort "replicas" N)
*/}}
{{- define "kanal.deployment" -}}
{{- $root := .root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "kanal.fullname" $root }}-{{ .component }}
  labels:
    {{- include "kanal.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  {{- if .replicas }}
  replicas: {{ .replicas }}
  {{- end }}
  {{- if eq .component "controller" }}
  strategy:
    type: Recreate
  {{- end }}
  selector:
    matchLabels:
      {{- include "kanal.selectorLabels" (dict "root" $root "component" .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "kanal.selectorLabels" (dict "root" $root "component" .component) | nindent 8 }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        {{- with .values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: 30
      containers:
        - name: {{ .component }}
          image: {{ include "kanal.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: [{{ .component | quote }}]
          ports:
            - name: http
              containerPort: {{ .port }}
            {{- if eq .component "ingress" }}
            # /metrics: apart from the events on `http`, which senders reach.
            - name: metrics
              containerPort: {{ $root.Values.config.ingressMetricsPort }}
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ include "kanal.fullname" $root }}-settings
          env:
            {{- include "kanal.env" $root | nindent 12 }}
            {{- if eq .component "controller" }}
            - name: KANAL_CONTROLLER_TOKEN_FILE
              value: /etc/kanal/controller-token/{{ $root.Values.controller.token.key }}
            {{- end }}
            {{- if and (eq .component "ingress") $root.Values.ingress.auth.tokensSecret }}
            - name: KANAL_INGRESS_AUTH_TOKENS_FILE
              value: /etc/kanal/ingress-auth/{{ $root.Values.ingress.auth.tokensKey }}
            {{- end }}
          startupProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 10
            failureThreshold: 3
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            periodSeconds: 5
            failureThreshold: 2
          resources:
            {{- toYaml .values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          volumeMounts:
            {{- include "kanal.volumeMounts" $root | nindent 12 }}
            {{- if eq .component "controller" }}
            - name: controller-token
              mountPath: /etc/kanal/controller-token
              readOnly: true
            {{- end }}
            {{- if and (eq .component "ingress") $root.Values.ingress.auth.tokensSecret }}
            - name: ingress-auth
              mountPath: /etc/kanal/ingress-auth
              readOnly: true
            {{- end }}
      volumes:
        {{- include "kanal.volumes" $root | nindent 8 }}
        {{- if eq .component "controller" }}
        - name: controller-token
          secret:
            secretName: {{ include "kanal.controllerTokenSecret" $root }}
        {{- end }}
        {{- if and (eq .component "ingress") $root.Values.ingress.auth.tokensSecret }}
        - name: ingress-auth
          secret:
            secretName: {{ $root.Values.ingress.auth.tokensSecret }}
        {{- end }}
      {{- with .values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
