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

{{/* Pod template labels: no chart or app version, so a chart bump alone restarts no GPU pod. */}}
{{- define "rerank-sidecar.podLabels" -}}
{{ include "rerank-sidecar.selectorLabels" . }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- with .Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Fleet vLLM pods: another name, so the sidecar's selector, Service and policies never match them. */}}
{{- define "rerank-sidecar.vllmSelectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-vllm" (include "rerank-sidecar.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "rerank-sidecar.vllmFullname" -}}
{{- include "rerank-sidecar.suffixed" (dict "root" . "suffix" "vllm") }}
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
{{- $img := .Values.vllm.image }}
{{- if $img.digest }}
{{- printf "%s@%s" $img.repository $img.digest }}
{{- else }}
{{- printf "%s:%s" $img.repository $img.tag }}
{{- end }}
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
{{- else if eq .Values.vllm.mode "fleet" }}
{{- /* dns+: every A record of the headless Service is a replica, re-resolved periodically. */}}
{{- printf "dns+http://%s.%s.svc:%d" (include "rerank-sidecar.vllmFullname" .) .Release.Namespace (int .Values.vllm.port) }}
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
- name: RERANK_LONG_DOCUMENTS
  value: {{ $c.longDocuments | quote }}
- name: RERANK_MAX_WINDOWS_PER_DOCUMENT
  value: {{ int64 $c.maxWindowsPerDocument | quote }}
- name: RERANK_WINDOW_OVERLAP_TOKENS
  value: {{ int64 $c.windowOverlapTokens | quote }}
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
- name: RERANK_MAX_CONCURRENT_REQUESTS
  value: {{ int64 $c.maxConcurrentRequests | quote }}
- name: RERANK_FALLBACK
  value: {{ $c.fallback | quote }}
- name: RERANK_FALLBACK_QUEUE_FRACTION
  value: {{ $c.fallbackQueueFraction | quote }}
- name: RERANK_CONNECT_TIMEOUT_S
  value: {{ $c.connectTimeoutS | quote }}
- name: RERANK_REPLICA_COOLDOWN_S
  value: {{ $c.replicaCooldownS | quote }}
- name: RERANK_VLLM_CONNECTIONS
  value: {{ int64 $c.vllmConnections | quote }}
- name: RERANK_HEALTH_CHECK_INTERVAL_S
  value: {{ $c.healthCheckIntervalS | quote }}
- name: RERANK_HEALTH_CHECK_TIMEOUT_S
  value: {{ $c.healthCheckTimeoutS | quote }}
- name: RERANK_EMBEDDED_BATCH_SIZE
  value: {{ int64 $c.embeddedBatchSize | quote }}
- name: RERANK_HEADER_TIMEOUT_S
  value: {{ $c.headerTimeoutS | quote }}
- name: RERANK_BODY_TIMEOUT_S
  value: {{ $c.bodyTimeoutS | quote }}
- name: RERANK_KEEPALIVE_TIMEOUT_S
  value: {{ $c.keepaliveTimeoutS | quote }}
- name: RERANK_MAX_CONNECTION_AGE_S
  value: {{ $c.maxConnectionAgeS | quote }}
- name: RERANK_DRAIN_DELAY_S
  value: {{ $c.drainDelayS | quote }}
- name: RERANK_SHUTDOWN_TIMEOUT_S
  value: {{ $c.shutdownTimeoutS | quote }}
{{- if not (kindIs "invalid" $c.vllmKeepaliveS) }}
- name: RERANK_VLLM_KEEPALIVE_S
  value: {{ $c.vllmKeepaliveS | quote }}
{{- end }}
{{- if eq .Values.vllm.mode "fleet" }}
- name: RERANK_VLLM_DISCOVERY_INTERVAL_S
  value: {{ .Values.vllm.fleet.discoveryIntervalSeconds | quote }}
{{- end }}
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
{{- if gt (int $v.gpu) 1 }}
- --tensor-parallel-size
- {{ int64 $v.gpu | quote }}
{{- end }}
# Drain instead of aborting running requests on SIGTERM (vLLM's default 0 aborts them).
- --shutdown-timeout
- {{ include "rerank-sidecar.vllmShutdownTimeout" . | quote }}
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
{{ include "rerank-sidecar.podIdentity" $root }}
restartPolicy: Never
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


{{/* Drain timeline (docs/deploy.md): whole seconds, as preStop and the vLLM flag need them. */}}
{{- define "rerank-sidecar.sidecarPreStop" -}}
{{- int64 .Values.drain.endpointPropagationSeconds }}
{{- end }}

{{/* Pod mode: vLLM keeps taking work until the sidecar has stopped sending new work. Fleet: until
every sidecar has re-resolved the headless Service without this pod. */}}
{{- define "rerank-sidecar.vllmPreStop" -}}
{{- $p := int64 .Values.drain.endpointPropagationSeconds }}
{{- if eq .Values.vllm.mode "fleet" }}
{{- add $p (int64 (ceil .Values.vllm.fleet.discoveryIntervalSeconds)) (int64 .Values.drain.dnsTtlSeconds) }}
{{- else }}
{{- add $p (int64 (ceil .Values.sidecar.config.drainDelayS)) }}
{{- end }}
{{- end }}

{{/* Pod mode: the sidecar's in-flight work ends within its shutdown timeout. Fleet: a batch lives
at most one request deadline. */}}
{{- define "rerank-sidecar.vllmShutdownTimeout" -}}
{{- $c := .Values.sidecar.config }}
{{- int64 (ceil (ternary $c.requestTimeoutS $c.shutdownTimeoutS (eq .Values.vllm.mode "fleet"))) }}
{{- end }}

{{/* Derived grace: the last container's preStop plus its drain, plus 10 s for the exit itself. */}}
{{- define "rerank-sidecar.derivedGrace" -}}
{{- $c := .root.Values.sidecar.config }}
{{- $vllm := add (include "rerank-sidecar.vllmPreStop" .root) (include "rerank-sidecar.vllmShutdownTimeout" .root) }}
{{- if eq .pod "vllm" }}
{{- add $vllm 10 }}
{{- else }}
{{- $sidecar := add (include "rerank-sidecar.sidecarPreStop" .root) (ceil $c.drainDelayS) (ceil $c.shutdownTimeoutS) }}
{{- add (ternary (max $sidecar $vllm) $sidecar (eq .root.Values.vllm.mode "pod")) 10 }}
{{- end }}
{{- end }}

{{/* terminationGracePeriodSeconds of .pod (sidecar or vllm): derived, or the value if not shorter. */}}
{{- define "rerank-sidecar.grace" -}}
{{- $derived := int64 (include "rerank-sidecar.derivedGrace" .) }}
{{- $set := .root.Values.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $set }}
{{- $derived }}
{{- else if lt (int64 $set) $derived }}
{{- fail (printf "terminationGracePeriodSeconds (%v) is shorter than the drain (%v s: preStop, drain delay, shutdown timeout): raise it or leave it null to derive it" $set $derived) }}
{{- else }}
{{- int64 $set }}
{{- end }}
{{- end }}

{{/* The container lifecycle: the value, or a preStop sleep of .seconds. */}}
{{- define "rerank-sidecar.lifecycle" -}}
{{- if .lifecycle }}
{{- toYaml .lifecycle }}
{{- else }}
preStop:
  exec:
    command: ["sleep", {{ .seconds | quote }}]
{{- end }}
{{- end }}

{{/* Seconds a probe may fail before the container counts as started (0 without a probe). */}}
{{- define "rerank-sidecar.startupBudget" -}}
{{- with .startupProbe }}
{{- add (default 0 .initialDelaySeconds) (mul (default 10 .periodSeconds) (default 3 .failureThreshold)) }}
{{- else }}0{{- end }}
{{- end }}

{{/* progressDeadlineSeconds for a Deployment whose containers are .probes: derived or checked. */}}
{{- define "rerank-sidecar.progressDeadline" -}}
{{- $budget := 0 }}
{{- range .probes }}
{{- $budget = max $budget (int64 (include "rerank-sidecar.startupBudget" .)) }}
{{- end }}
{{- $derived := add $budget 600 }}
{{- $set := .root.Values.progressDeadlineSeconds }}
{{- if kindIs "invalid" $set }}
{{- $derived }}
{{- else if lt (int64 $set) $budget }}
{{- fail (printf "progressDeadlineSeconds (%v) is shorter than the startup probes allow (%v s): a cold start would fail the rollout" $set $budget) }}
{{- else }}
{{- int64 $set }}
{{- end }}
{{- end }}

{{/* A ReadWriteOnce weight cache is attached by one node: no second replica, no surge pod. */}}
{{- define "rerank-sidecar.checkCache" -}}
{{- $v := .root.Values.vllm }}
{{- if and (eq $v.cache.type "pvc") (has "ReadWriteOnce" $v.cache.accessModes) }}
{{- if .scaled }}
{{- fail "a ReadWriteOnce weight cache (vllm.cache.type=pvc) holds one replica: use ReadWriteMany or emptyDir with several replicas or autoscaling" }}
{{- end }}
{{- $u := .root.Values.updateStrategy }}
{{- if and (ne $u.type "Recreate") (ne (toString (dig "rollingUpdate" "maxSurge" 1 $u)) "0") }}
{{- fail "a ReadWriteOnce weight cache (vllm.cache.type=pvc) cannot be attached by the surge pod of a rolling update, so the upgrade would hang: set updateStrategy.type=Recreate (a short outage per upgrade), vllm.cache.accessModes=[ReadWriteMany], or vllm.cache.type=emptyDir" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Sidecar memory: base + a full queue of maxLength-token pairs at 4 bytes a token. */}}
{{- define "rerank-sidecar.sidecarMemory" -}}
{{- $c := .Values.sidecar.config }}
{{- $queueBytes := mul (int64 $c.maxQueuePairs) (int64 $c.maxLength) 4 }}
{{- $mib := add (int64 .Values.sidecar.memory.baseMiB) (div (add $queueBytes 1048575) 1048576) }}
{{- printf "%dMi" $mib }}
{{- end }}

{{- define "rerank-sidecar.sidecarResources" -}}
{{- $res := deepCopy .Values.sidecar.resources }}
{{- $memory := include "rerank-sidecar.sidecarMemory" . }}
{{- $_ := set $res "requests" (merge (default (dict) $res.requests) (dict "memory" $memory)) }}
{{- $_ := set $res "limits" (merge (default (dict) $res.limits) (dict "memory" $memory)) }}
{{- toYaml $res }}
{{- end }}

{{- define "rerank-sidecar.shmSize" -}}
{{- $gpu := int .Values.vllm.gpu }}
{{- if not (kindIs "invalid" .Values.vllm.shmSize) }}
{{- .Values.vllm.shmSize }}
{{- else if gt $gpu 1 }}
{{- printf "%dGi" (mul 4 $gpu) }}
{{- else }}2Gi{{- end }}
{{- end }}

{{/* The default search-cluster peer of the NetworkPolicy for the engine. */}}
{{- define "rerank-sidecar.searchClusterSelector" -}}
{{- $np := .Values.networkPolicy.searchCluster }}
{{- if $np.podSelector }}
{{- toYaml $np.podSelector }}
{{- else if eq .Values.setup.engine "elasticsearch" }}
common.k8s.elastic.co/type: elasticsearch
{{- else }}
app.kubernetes.io/name: opensearch
{{- end }}
{{- end }}

{{/* sha256 of the bearer token, so a changed token rolls the pods. The generated token is made
once per render (kept in .Values) and shared with secret.yaml. */}}
{{- define "rerank-sidecar.generatedToken" -}}
{{- if not (hasKey .Values.auth "generatedToken") }}
{{- $previous := lookup "v1" "Secret" .Release.Namespace (include "rerank-sidecar.authSecretName" .) }}
{{- $token := "" }}
{{- if and $previous $previous.data }}
{{- $token = index $previous.data "api-token" | default "" }}
{{- end }}
{{- $_ := set .Values.auth "generatedToken" (default (randAlphaNum 48 | b64enc) $token) }}
{{- end }}
{{- .Values.auth.generatedToken }}
{{- end }}

{{- define "rerank-sidecar.tokenChecksum" -}}
{{- if .Values.auth.existingSecret }}
{{- $secret := lookup "v1" "Secret" .Release.Namespace .Values.auth.existingSecret }}
{{- if and $secret $secret.data }}
{{- index $secret.data .Values.auth.existingSecretKey | default "" | sha256sum }}
{{- end }}
{{- else }}
{{- include "rerank-sidecar.generatedToken" . | sha256sum }}
{{- end }}
{{- end }}


{{/* The vLLM container: in the sidecar's pod (pod mode) or alone (fleet). */}}
{{- define "rerank-sidecar.vllmContainer" -}}
- name: vllm
  image: {{ include "rerank-sidecar.vllmImage" . }}
  imagePullPolicy: {{ .Values.vllm.image.pullPolicy }}
  command: ["vllm", "serve"]
  args:
    {{- include "rerank-sidecar.vllmArgs" . | trim | nindent 4 }}
  ports:
    - name: vllm-http
      containerPort: {{ .Values.vllm.port }}
      protocol: TCP
  env:
    # The image's user is root; these keep every cache on writable volumes for a random UID.
    - name: HOME
      value: /tmp/home
    - name: USER
      value: vllm
    - name: HF_HOME
      value: /cache/huggingface
    - name: XDG_CACHE_HOME
      value: /tmp/cache
    - name: XDG_CONFIG_HOME
      value: /tmp/config
    - name: VLLM_CACHE_ROOT
      value: /tmp/vllm-cache
    - name: VLLM_CONFIG_ROOT
      value: /tmp/vllm-config
    - name: TRITON_CACHE_DIR
      value: /tmp/triton
    - name: TORCHINDUCTOR_CACHE_DIR
      value: /tmp/torchinductor
    - name: NUMBA_CACHE_DIR
      value: /tmp/numba
    - name: VLLM_NO_USAGE_STATS
      value: "1"
    - name: DO_NOT_TRACK
      value: "1"
    {{- with include "rerank-sidecar.hfTokenEnv" . }}
    {{- . | trim | nindent 4 }}
    {{- end }}
    {{- with .Values.vllm.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- include "rerank-sidecar.probes" .Values.vllm | trim | nindent 2 }}
  lifecycle:
    {{- include "rerank-sidecar.lifecycle" (dict "lifecycle" .Values.vllm.lifecycle "seconds" (include "rerank-sidecar.vllmPreStop" .)) | nindent 4 }}
  resources:
    {{- include "rerank-sidecar.vllmResources" . | nindent 4 }}
  securityContext:
    {{- toYaml .Values.vllm.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: cache
      mountPath: /cache
    - name: vllm-tmp
      mountPath: /tmp
    - name: shm
      mountPath: /dev/shm
{{- end }}

{{/* The vLLM container's volumes. */}}
{{- define "rerank-sidecar.vllmVolumes" -}}
- name: vllm-tmp
  emptyDir:
    sizeLimit: 8Gi
- name: shm
  emptyDir:
    medium: Memory
    sizeLimit: {{ include "rerank-sidecar.shmSize" . }}
- name: cache
  {{- if eq .Values.vllm.cache.type "pvc" }}
  persistentVolumeClaim:
    claimName: {{ default (include "rerank-sidecar.suffixed" (dict "root" . "suffix" "cache")) .Values.vllm.cache.existingClaim }}
  {{- else }}
  emptyDir:
    sizeLimit: {{ .Values.vllm.cache.sizeLimit }}
  {{- end }}
{{- end }}

{{/* Pod spec head shared by every pod of the chart: identity and security. */}}
{{- define "rerank-sidecar.podIdentity" -}}
serviceAccountName: {{ include "rerank-sidecar.serviceAccountName" . }}
# No container talks to the Kubernetes API.
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{/* Placement of a long-running pod; .gpu adds vLLM's node selector and tolerations. */}}
{{- define "rerank-sidecar.podPlacement" -}}
{{- $v := .root.Values }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with ternary (merge (dict) $v.vllm.nodeSelector $v.nodeSelector) $v.nodeSelector .gpu }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with ternary (concat $v.tolerations $v.vllm.tolerations) $v.tolerations .gpu }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
