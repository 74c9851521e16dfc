{{/* Names */}}
{{- define "rerank-sidecar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "rerank-sidecar.fullname" -}}
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

{{/* A name with a suffix, kept within 63 characters. */}}
{{- define "rerank-sidecar.suffixed" -}}
{{- $base := include "rerank-sidecar.fullname" .root | trunc (int (sub 62 (len .suffix))) | trimSuffix "-" }}
{{- printf "%s-%s" $base .suffix }}
{{- end }}

{{- define "rerank-sidecar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels */}}
{{- define "rerank-sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rerank-sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rerank-sidecar.labels" -}}
helm.sh/chart: {{ include "rerank-sidecar.chart" . }}
{{ include "rerank-sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rerank-sidecar
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pods of this release allowed through the NetworkPolicy (setup Job, helm test). */}}
{{- define "rerank-sidecar.clientLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
rerank-sidecar/client: "true"
{{- end }}

{{- define "rerank-sidecar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rerank-sidecar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Images */}}
{{- define "rerank-sidecar.image" -}}
{{- $img := .Values.sidecar.image }}
{{- $repo := ternary (printf "%s/%s" $img.registry $img.repository) $img.repository (ne $img.registry "") }}
{{- if $img.digest }}
{{- printf "%s@%s" $repo $img.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .Chart.AppVersion $img.tag) }}
{{- end }}
{{- end }}

{{- define "rerank-sidecar.vllmImage" -}}
{{- printf "%s:%s" .Values.vllm.image.repository .Values.vllm.image.tag }}
{{- end }}

{{/* Secrets */}}
{{- define "rerank-sidecar.authSecretName" -}}
{{- default (include "rerank-sidecar.suffixed" (dict "root" . "suffix" "auth")) .Values.auth.existingSecret }}
{{- end }}

{{- define "rerank-sidecar.authSecretKey" -}}
{{- if .Values.auth.existingSecret }}{{ .Values.auth.existingSecretKey }}{{ else }}api-token{{ end }}
{{- end }}

{{/* URLs */}}
{{- define "rerank-sidecar.vllmUrl" -}}
{{- if eq .Values.vllm.mode "pod" }}
{{- printf "http://127.0.0.1:%d" (int .Values.vllm.port) }}
{{- else }}
{{- if not .Values.vllm.external.urls }}
{{- fail "vllm.mode=external needs at least one URL in vllm.external.urls" }}
{{- end }}
{{- join "," .Values.vllm.external.urls }}
{{- end }}
{{- end }}

{{- define "rerank-sidecar.serviceUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "rerank-sidecar.fullname" .) .Release.Namespace (int .Values.service.port) }}
{{- end }}

{{- define "rerank-sidecar.servedModelName" -}}
{{- if .Values.sidecar.config.servedModelName }}
{{- .Values.sidecar.config.servedModelName }}
{{- else if eq .Values.vllm.mode "pod" }}
{{- .Values.vllm.servedModelName }}
{{- end }}
{{- end }}

{{/* Container pieces */}}
{{- define "rerank-sidecar.probes" -}}
{{- with .startupProbe }}
startupProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .livenessProbe }}
livenessProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .readinessProbe }}
readinessProbe:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Sidecar settings as RERANK_* variables, one per row of docs/INTERFACES.md. */}}
{{- define "rerank-sidecar.sidecarEnv" -}}
{{- $c := .Values.sidecar.config }}
- name: RERANK_HOST
  value: "0.0.0.0"
- name: RERANK_PORT
  value: {{ int64 $c.port | quote }}
- name: RERANK_VLLM_URL
  value: {{ include "rerank-sidecar.vllmUrl" . | quote }}
# Never fall back to the embedded CPU model (the image does not ship it).
- name: RERANK_BACKEND
  value: vllm
- name: RERANK_MODEL
  value: {{ default .Values.vllm.model $c.model | quote }}
{{- with include "rerank-sidecar.servedModelName" . }}
- name: RERANK_SERVED_MODEL_NAME
  value: {{ . | quote }}
{{- end }}
- name: RERANK_MAX_LENGTH
  value: {{ int64 $c.maxLength | quote }}
- name: RERANK_INSTRUCTION
  value: {{ $c.instruction | quote }}
- name: RERANK_MAX_BATCH_TOKENS
  value: {{ int64 $c.maxBatchTokens | quote }}
- name: RERANK_MAX_BATCH_PAIRS
  value: {{ int64 $c.maxBatchPairs | quote }}
- name: RERANK_MAX_WAIT_MS
  value: {{ $c.maxWaitMs | quote }}
- name: RERANK_MAX_INFLIGHT_BATCHES
  value: {{ int64 $c.maxInflightBatches | quote }}
- name: RERANK_MAX_QUEUE_PAIRS
  value: {{ int64 $c.maxQueuePairs | quote }}
- name: RERANK_MAX_DOCUMENTS
  value: {{ int64 $c.maxDocuments | quote }}
- name: RERANK_MAX_BODY_BYTES
  value: {{ int64 $c.maxBodyBytes | quote }}
- name: RERANK_REQUEST_TIMEOUT_S
  value: {{ $c.requestTimeoutS | quote }}
- name: RERANK_LOG_LEVEL
  value: {{ $c.logLevel | quote }}
{{- if .Values.auth.enabled }}
- name: RERANK_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "rerank-sidecar.authSecretName" . }}
      key: {{ include "rerank-sidecar.authSecretKey" . }}
{{- end }}
- name: HF_HOME
  value: /cache/huggingface
{{- include "rerank-sidecar.hfTokenEnv" . }}
{{- with .Values.sidecar.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "rerank-sidecar.hfTokenEnv" -}}
{{- with .Values.vllm.hfToken.existingSecret }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.vllm.hfToken.key }}
{{- end }}
{{- end }}

{{/* The exact serve flags of Qwen3-Reranker (shared/CONTRACTS.md §6). */}}
{{- define "rerank-sidecar.vllmArgs" -}}
{{- $v := .Values.vllm }}
{{- if lt (int $v.maxModelLen) (int .Values.sidecar.config.maxLength) }}
{{- fail (printf "vllm.maxModelLen (%v) must be >= sidecar.config.maxLength (%v)" $v.maxModelLen .Values.sidecar.config.maxLength) }}
{{- end }}
{{- $overrides := dict "architectures" (list "Qwen3ForSequenceClassification") "classifier_from_token" (list "no" "yes") "is_original_qwen3_reranker" true }}
- {{ $v.model | quote }}
- --host
- "0.0.0.0"
- --port
- {{ int64 $v.port | quote }}
- --runner
- pooling
- --hf-overrides
- {{ toJson $overrides | quote }}
- --max-model-len
- {{ int64 $v.maxModelLen | quote }}
{{- with $v.servedModelName }}
- --served-model-name
- {{ . | quote }}
{{- end }}
{{- with $v.dtype }}
- --dtype
- {{ . | quote }}
{{- end }}
{{- if $v.enforceEager }}
- --enforce-eager
{{- end }}
{{- if not (kindIs "invalid" $v.gpuMemoryUtilization) }}
- --gpu-memory-utilization
- {{ $v.gpuMemoryUtilization | quote }}
{{- end }}
{{- with $v.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "rerank-sidecar.vllmResources" -}}
{{- $res := deepCopy .Values.vllm.resources }}
{{- if gt (int .Values.vllm.gpu) 0 }}
{{- $_ := set $res "requests" (merge (dict "nvidia.com/gpu" (int .Values.vllm.gpu)) (default (dict) $res.requests)) }}
{{- $_ := set $res "limits" (merge (dict "nvidia.com/gpu" (int .Values.vllm.gpu)) (default (dict) $res.limits)) }}
{{- end }}
{{- toYaml $res }}
{{- end }}

{{/* The setup/teardown Job's pod spec; .cmd is setup or teardown. */}}
{{- define "rerank-sidecar.setupPodSpec" -}}
{{- $s := .root.Values.setup }}
{{- $root := .root }}
{{- if not $s.urls }}
{{- fail "setup.enabled needs at least one cluster URL in setup.urls" }}
{{- end }}
{{- $prefix := upper $s.engine }}
serviceAccountName: {{ include "rerank-sidecar.serviceAccountName" $root }}
automountServiceAccountToken: false
restartPolicy: Never
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- if eq .cmd "setup" }}
# The CLI's --wait-timeout covers the model deploy only; Elasticsearch also calls the sidecar
# while creating the endpoint, so wait here until it is ready (the first start downloads weights).
initContainers:
  - name: wait-for-sidecar
    image: {{ include "rerank-sidecar.image" $root }}
    imagePullPolicy: {{ $root.Values.sidecar.image.pullPolicy }}
    command: ["python", "-c"]
    args:
      - |
        import sys, time, urllib.request
        url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5):
                    break
            except OSError as exc:
                if time.monotonic() > deadline:
                    sys.exit(f"sidecar not ready: {url}: {exc}")
                time.sleep(5)
      - {{ printf "%s/readyz" (include "rerank-sidecar.serviceUrl" $root) | quote }}
      - {{ int64 $s.sidecarWaitSeconds | quote }}
    resources:
      {{- toYaml $s.resources | nindent 6 }}
    securityContext:
      {{- toYaml $root.Values.sidecar.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
{{- end }}
containers:
  - name: {{ .cmd }}
    image: {{ include "rerank-sidecar.image" $root }}
    imagePullPolicy: {{ $root.Values.sidecar.image.pullPolicy }}
    command: ["python", "-m", "es_integration"]
    args:
      - {{ $s.engine }}
      - {{ .cmd }}
      - --yes
      {{- range $s.urls }}
      - --url
      - {{ . | quote }}
      {{- end }}
      - --sidecar-url
      - {{ default (include "rerank-sidecar.serviceUrl" $root) $s.sidecarUrl | quote }}
      - --name
      - {{ $s.name | quote }}
      {{- if eq .cmd "setup" }}
      {{- range $s.indices }}
      - --index
      - {{ . | quote }}
      {{- end }}
      {{- with $s.fields }}
      - --fields
      - {{ join "," . | quote }}
      {{- end }}
      {{- with $s.instruction }}
      - --instruction
      - {{ . | quote }}
      {{- end }}
      - --wait-timeout
      - {{ int64 $s.waitTimeoutSeconds | quote }}
      {{- end }}
      {{- if $s.caSecret }}
      - --ca-certs
      - /etc/rerank-sidecar/ca/{{ $s.caKey }}
      {{- end }}
      {{- if $s.insecure }}
      - --insecure
      {{- end }}
      {{- with $s.extraArgs }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    env:
      {{- with $s.existingSecret }}
      {{- if $s.usernameKey }}
      - name: {{ $prefix }}_USERNAME
        valueFrom:
          secretKeyRef:
            name: {{ . }}
            key: {{ $s.usernameKey }}
      {{- end }}
      {{- if $s.passwordKey }}
      - name: {{ $prefix }}_PASSWORD
        valueFrom:
          secretKeyRef:
            name: {{ . }}
            key: {{ $s.passwordKey }}
      {{- end }}
      {{- if $s.apiKeyKey }}
      - name: {{ $prefix }}_API_KEY
        valueFrom:
          secretKeyRef:
            name: {{ . }}
            key: {{ $s.apiKeyKey }}
      {{- end }}
      {{- end }}
      {{- if $root.Values.auth.enabled }}
      - name: RERANK_SIDECAR_TOKEN
        valueFrom:
          secretKeyRef:
            name: {{ include "rerank-sidecar.authSecretName" $root }}
            key: {{ include "rerank-sidecar.authSecretKey" $root }}
      {{- end }}
    resources:
      {{- toYaml $s.resources | nindent 6 }}
    securityContext:
      {{- toYaml $root.Values.sidecar.containerSecurityContext | nindent 6 }}
    volumeMounts:
      - name: tmp
        mountPath: /tmp
      {{- if $s.caSecret }}
      - name: ca
        mountPath: /etc/rerank-sidecar/ca
        readOnly: true
      {{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
  {{- if $s.caSecret }}
  - name: ca
    secret:
      secretName: {{ $s.caSecret }}
  {{- end }}
{{- end }}

{{- define "rerank-sidecar.labelList" -}}
{{- $pairs := list }}
{{- range $k, $v := . }}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}
