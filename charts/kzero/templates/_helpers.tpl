{{/* Names and labels shared by every object. */}}
{{- define "kzero.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kzero.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kzero.labels" -}}
{{ include "kzero.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kzero.cacheClaimName" -}}
{{- if .Values.cache.create -}}
{{- printf "%s-model-cache" (include "kzero.fullname" .) -}}
{{- else -}}
{{- required "cache.existingClaim is required when cache.create is false" .Values.cache.existingClaim -}}
{{- end -}}
{{- end -}}

{{- define "kzero.image" -}}
{{- printf "%s:%s" .repository .tag -}}
{{- end -}}

{{/*
What `lookup` can tell about GPUs, as YAML: reachable (whether there is a
cluster to ask) and gpuNodes (nodes with allocatable nvidia.com/gpu now).
`lookup` returns an empty map under `helm template`, `--dry-run=client` and
GitOps renderers; a reachable cluster answers a NodeList with `items`.
*/}}
{{- define "kzero.gpuView" -}}
{{- $nodes := lookup "v1" "Node" "" "" -}}
{{- $gpuNodes := 0 -}}
{{- range (get $nodes "items" | default list) -}}
{{- $gpus := dig "status" "allocatable" "nvidia.com/gpu" "0" . | toString -}}
{{- if and (ne $gpus "0") (ne $gpus "") -}}
{{- $gpuNodes = add1 $gpuNodes -}}
{{- end -}}
{{- end -}}
reachable: {{ hasKey $nodes "items" }}
gpuNodes: {{ $gpuNodes }}
{{- end -}}

{{/*
The device a model runs on and why, as YAML (device, reason). An explicit
accelerator always wins. `auto`:
  1. keeps the device of the InferenceService this release already runs, so an
     upgrade never moves a model because a GPU pool happens to be scaled to zero;
  2. else gpu when the model has a gpuUri and a node has allocatable nvidia.com/gpu;
  3. else cpu when the model has a uri;
  4. else fails: a gpuUri-only model is never put on CPU, and without cluster
     access (helm template) auto cannot know, so it asks for an explicit choice.
Call with (dict "root" $ "model" $mergedModel).
*/}}
{{- define "kzero.device" -}}
{{- $m := .model -}}
{{- if ne $m.accelerator "auto" -}}
device: {{ $m.accelerator }}
reason: accelerator is {{ $m.accelerator }} in the values
{{- else -}}
{{- $existing := lookup "serving.kserve.io/v1beta1" "InferenceService" .root.Release.Namespace $m.name -}}
{{- $kept := dig "metadata" "labels" "kzero.dev/accelerator" "" $existing -}}
{{- $view := include "kzero.gpuView" .root | fromYaml -}}
{{- if and (eq $kept "gpu") $m.gpuUri -}}
device: gpu
reason: auto kept the device of the running InferenceService
{{- else if and (eq $kept "cpu") $m.uri -}}
device: cpu
reason: auto kept the device of the running InferenceService
{{- else if and $m.gpuUri (gt (int $view.gpuNodes) 0) -}}
device: gpu
reason: auto found {{ $view.gpuNodes }} node(s) with allocatable nvidia.com/gpu
{{- else if and $m.uri (not $view.reachable) -}}
device: cpu
reason: auto could not list nodes (no cluster access, e.g. helm template), so it used the GGUF uri{{ if $m.gpuUri }}; set accelerator gpu to serve the gpuUri{{ end }}
{{- else if $m.uri -}}
device: cpu
reason: auto found no node with allocatable nvidia.com/gpu{{ if $m.gpuUri }} (a GPU pool scaled to zero looks the same: set accelerator gpu to serve the gpuUri){{ end }}
{{- else if not $view.reachable -}}
{{- fail (printf "models[%s]: accelerator auto cannot tell whether the cluster has GPUs without cluster access (helm template, --dry-run=client, GitOps renderers), and the model has only a gpuUri: set accelerator: gpu" $m.name) -}}
{{- else -}}
{{- fail (printf "models[%s]: accelerator auto found no node with allocatable nvidia.com/gpu and the model has only a gpuUri, which is never served on CPU: set accelerator: gpu (it then waits for a GPU node, e.g. a pool scaled to zero) or add a GGUF uri" $m.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
A models[] entry merged over .Values.defaults, plus "device" (cpu or gpu),
"deviceReason" (why, for NOTES.txt) and "servedUri" (the URI that device serves). Returned as YAML: use fromYaml.
Call with (dict "root" $ "model" $entry).
*/}}
{{- define "kzero.model" -}}
{{- $root := .root -}}
{{- $m := mergeOverwrite (deepCopy $root.Values.defaults) (deepCopy .model) -}}
{{- if and (eq $m.accelerator "gpu") (not $m.gpuUri) -}}
{{- fail (printf "models[%s]: accelerator is gpu but gpuUri (a Hugging Face safetensors directory for vLLM) is empty" $m.name) -}}
{{- end -}}
{{- $choice := include "kzero.device" (dict "root" $root "model" $m) | fromYaml -}}
{{- $device := $choice.device -}}
{{- $_ := set $m "deviceReason" $choice.reason -}}
{{- if and (eq $device "cpu") (not $m.uri) -}}
{{- fail (printf "models[%s]: runs on CPU (accelerator %s) but uri (a GGUF file for llama.cpp) is empty" $m.name $m.accelerator) -}}
{{- end -}}
{{- $_ := set $m "device" $device -}}
{{- $_ := set $m "servedUri" (ternary $m.gpuUri $m.uri (eq $device "gpu")) -}}
{{- $managed := include "kzero.managedEnvNames" $root | fromJsonArray -}}
{{- range $m.env -}}
{{- if has .name $managed -}}
{{- fail (printf "models[%s]: env sets %s, which the chart sets itself: use cache, timeouts, limits or auth instead (API keys belong in auth.existingSecret, never in env)" $m.name .name) -}}
{{- end -}}
{{- end -}}
{{- $l := $m.limits -}}
{{- if and (gt (int $m.containerConcurrency) 0) (gt (int $l.maxRunningRequests) 0) (gt (int $m.containerConcurrency) (add $l.maxRunningRequests $l.maxQueuedRequests)) -}}
{{- fail (printf "models[%s]: containerConcurrency %d lets Knative send more requests than limits.maxRunningRequests + limits.maxQueuedRequests (%d) admit: the rest would get 429" $m.name (int $m.containerConcurrency) (add $l.maxRunningRequests $l.maxQueuedRequests)) -}}
{{- end -}}
{{- $_ := set $m "timing" (include "kzero.timing" (dict "root" $root "model" $m) | fromYaml) -}}
{{- toYaml $m -}}
{{- end -}}

{{/* Environment variables the chart owns; a model's env may not set them. */}}
{{- define "kzero.managedEnvNames" -}}
{{- list "KZERO_CACHE_DIR" "KZERO_REQUEST_TIMEOUT_S" "KZERO_DRAIN_TIMEOUT_S" "KZERO_MAX_RUNNING_REQUESTS" "KZERO_MAX_QUEUED_REQUESTS" "KZERO_MAX_PROMPT_TOKENS" "KZERO_MAX_TOKENS_CAP" "KZERO_MAX_STOP_SEQUENCES" "KZERO_MAX_STOP_LENGTH" "KZERO_MAX_REQUEST_BYTES" "KZERO_API_KEY" "KZERO_API_KEY_FILE" "KZERO_AUTH_HEALTH" "KZERO_AUTH_METRICS" "KZERO_PREFIX_CACHE_DIR" "KZERO_PREFIX_CACHE_MAX_BYTES" | toJson -}}
{{- end -}}

{{/*
The one place where a model's timeouts become Knative's. Knative sets every
revision pod's terminationGracePeriodSeconds to the revision's timeoutSeconds
(knative/serving pkg/reconciler/revision/resources/deploy.go, BuildPodSpec) and
its webhook refuses the field in the pod template, so the revision timeout is
the one number that carries both rules:

  grace = revision timeout >= 30 + drainSeconds + 5
    On deletion, Knative's queue-proxy drains for 30 s (drainSleepDuration in
    its sharedmain), and the predictor container's preStop hook
    (/wait-for-drain) holds its SIGTERM back until then. The predictor then has
    drainSeconds for streams in flight, plus 5 s to answer and exit, before
    SIGKILL.
  revision timeout >= coldStartSeconds + requestSeconds + 5
    The activator and queue-proxy end a request at the revision timeout
    ("activator request timeout", 504), counted from its arrival, so a cold
    start plus the predictor's own deadline plus 5 s must fit.

The revision timeout is the smallest value meeting both; KServe copies the
predictor's `timeout` into the revision's timeoutSeconds (and
responseStartTimeoutSeconds). Call with (dict "root" $ "model" $mergedModel).
*/}}
{{- define "kzero.timing" -}}
{{- $t := .model.timeouts -}}
{{- $queueProxyDrainSeconds := 30 -}}
{{- $marginSeconds := 5 -}}
{{- $forRequests := add $t.coldStartSeconds $t.requestSeconds $marginSeconds -}}
{{- $forShutdown := add $queueProxyDrainSeconds $t.drainSeconds $marginSeconds -}}
{{- $revision := max $forRequests $forShutdown -}}
{{- $ceiling := int .root.Values.knative.maxRevisionTimeoutSeconds -}}
{{- if gt (int $revision) $ceiling -}}
{{- fail (printf "models[%s]: the revision timeout needs %ds (max of timeouts.coldStartSeconds + timeouts.requestSeconds + 5 = %d and 30 + timeouts.drainSeconds + 5 = %d), above knative.maxRevisionTimeoutSeconds %d: shorten the timeouts or raise max-revision-timeout-seconds in Knative's config-defaults and knative.maxRevisionTimeoutSeconds" .model.name (int $revision) (int $forRequests) (int $forShutdown) $ceiling) -}}
{{- end -}}
requestTimeoutSeconds: {{ int $t.requestSeconds }}
drainTimeoutSeconds: {{ int $t.drainSeconds }}
revisionTimeoutSeconds: {{ int $revision }}
terminationGracePeriodSeconds: {{ int $revision }}
{{- end -}}

{{/* The mounted key file, when auth.existingSecret names a Secret. */}}
{{- define "kzero.apiKeyFile" -}}
{{- printf "%s/%s" (trimSuffix "/" .Values.auth.mountPath) .Values.auth.secretKey -}}
{{- end -}}

{{/* The Secret volume with the API key file (only its one key). */}}
{{- define "kzero.authVolume" -}}
- name: api-keys
  secret:
    secretName: {{ .Values.auth.existingSecret }}
    items:
      - key: {{ .Values.auth.secretKey }}
        path: {{ .Values.auth.secretKey }}
{{- end -}}

{{- define "kzero.authMount" -}}
- name: api-keys
  mountPath: {{ .Values.auth.mountPath }}
  readOnly: true
{{- end -}}

{{/*
The restricted pod security profile at pod level, for the plain pods (the warm
Job, the helm test Pod). InferenceServices get none: Knative's webhook refuses
runAsNonRoot at pod level unless kubernetes.podspec-securitycontext is on, and
even seccompProfile passes only under the cluster-wide secure-pod-defaults
(knative/serving pkg/apis/serving/fieldmask.go, PodSpecMask and
PodSecurityContextMask). The predictor container carries every field instead.
*/}}
{{- define "kzero.podSecurityContext" -}}
runAsNonRoot: true
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The label every pod that mounts the cache carries: with a ReadWriteOnce cache,
the pods find each other by it and share one node. A label value holds at most
63 characters; a claim name may be longer.
*/}}
{{- define "kzero.cacheUserLabel" -}}
kzero.dev/model-cache: {{ include "kzero.cacheClaimName" . | trunc 63 | trimSuffix "-" }}
{{- end -}}

{{/*
ReadWriteOnce attaches the volume to one node at a time, and Knative spreads a
revision's pods over nodes (deploy.go, makePreferSpreadRevisionOverNodes), so a
second pod on another node would hang on a Multi-Attach error. This required
pod affinity keeps every pod that mounts the cache (predictors of all models
and the warm Job) on the node where one already runs; the first one may go
anywhere (a pod that matches its own affinity term is allowed to start alone).
Knative adds its spreading only when the pod has no affinity, and admits
affinity only with kubernetes.podspec-affinity enabled. Empty for ReadWriteMany.
*/}}
{{- define "kzero.cacheAffinity" -}}
{{- if eq .Values.cache.accessMode "ReadWriteOnce" -}}
podAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - labelSelector:
        matchLabels:
          {{- include "kzero.cacheUserLabel" . | nindent 10 }}
      topologyKey: kubernetes.io/hostname
{{- end -}}
{{- end -}}

{{/* The restricted pod security profile: container level, plus a read-only root. */}}
{{- define "kzero.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The prompt-prefix cache of llama.cpp models (prefixCache). Each CPU model's
predictor mounts the cache PVC a second time, writable, with subPath
prefixes/<model>: the only place it can write. The model files stay behind the
read-only mount at cache.mountPath. The mount path is fixed: it must not be
cache.mountPath, inside it (the runtime could not create the mount point in a
read-only mount) or above it.
*/}}
{{- define "kzero.prefixCacheMountPath" -}}
/var/cache/kzero-prefixes
{{- end -}}

{{/* The model's prefix directory inside the cache volume. Call with the model name. */}}
{{- define "kzero.prefixCacheSubPath" -}}
{{- printf "prefixes/%s" . -}}
{{- end -}}

{{/* Whether a merged model (call with (dict "root" $ "model" $m)) gets the writable prefix mount. */}}
{{- define "kzero.prefixCacheWritable" -}}
{{- if and .root.Values.prefixCache.enabled (eq .model.device "cpu") -}}true{{- end -}}
{{- end -}}

{{/* Fails rendering when cache.mountPath and the prefix mount overlap. */}}
{{- define "kzero.checkPrefixCacheMountPath" -}}
{{- $prefix := include "kzero.prefixCacheMountPath" . -}}
{{- $cache := clean .Values.cache.mountPath -}}
{{- if or (eq $cache $prefix) (hasPrefix (printf "%s/" $cache) $prefix) (hasPrefix (printf "%s/" $prefix) $cache) -}}
{{- fail (printf "cache.mountPath %s overlaps the prefix cache mount %s: choose another cache.mountPath, or set prefixCache.enabled false" .Values.cache.mountPath $prefix) -}}
{{- end -}}
{{- end -}}

{{/* Writable paths on a read-only root: HOME and /tmp are emptyDirs. */}}
{{- define "kzero.scratchVolumes" -}}
- name: tmp
  emptyDir: {}
- name: home
  emptyDir: {}
{{- end -}}

{{- define "kzero.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/kzero
{{- end -}}

{{/* The served model names as a JSON list. */}}
{{- define "kzero.modelNames" -}}
{{- $names := list -}}
{{- range .Values.models -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}
