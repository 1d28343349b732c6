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
"true" when a node in the cluster has allocatable nvidia.com/gpu. `lookup`
returns nothing under `helm template` and --dry-run, so those render the CPU path.
*/}}
{{- define "kzero.clusterHasGPU" -}}
{{- $found := false -}}
{{- $nodes := lookup "v1" "Node" "" "" -}}
{{- range (get $nodes "items" | default list) -}}
{{- $gpus := dig "status" "allocatable" "nvidia.com/gpu" "0" . | toString -}}
{{- if and (ne $gpus "0") (ne $gpus "") -}}
{{- $found = true -}}
{{- end -}}
{{- end -}}
{{- if $found -}}true{{- end -}}
{{- end -}}

{{/*
A models[] entry merged over .Values.defaults, plus "device" (cpu or gpu) and
"servedUri" (the URI that device serves). Returned as YAML: use fromYaml.
Call with (dict "root" $ "model" $entry).
*/}}
{{- define "kzero.model" -}}
{{- $root := .root -}}
{{- $m := mergeOverwrite (deepCopy $root.Values.defaults) (deepCopy .model) -}}
{{- $device := "cpu" -}}
{{- if eq $m.accelerator "gpu" -}}
{{- if not $m.gpuUri -}}
{{- fail (printf "models[%s]: accelerator is gpu but gpuUri (a Hugging Face safetensors directory for vLLM) is empty" $m.name) -}}
{{- end -}}
{{- $device = "gpu" -}}
{{- else if and (eq $m.accelerator "auto") $m.gpuUri (include "kzero.clusterHasGPU" $root) -}}
{{- $device = "gpu" -}}
{{- end -}}
{{- if and (eq $device "cpu") (not $m.uri) -}}
{{- fail (printf "models[%s]: runs on CPU (accelerator %s) but uri (a GGUF file for llama.cpp) is empty" $m.name $m.accelerator) -}}
{{- end -}}
{{- $_ := set $m "device" $device -}}
{{- $_ := set $m "servedUri" (ternary $m.gpuUri $m.uri (eq $device "gpu")) -}}
{{- toYaml $m -}}
{{- end -}}

{{/*
The restricted pod security profile: pod level. Only the two fields Knative
accepts without its kubernetes.podspec-securitycontext feature; the UID and GID
are set per container.
*/}}
{{- define "kzero.podSecurityContext" -}}
runAsNonRoot: true
seccompProfile:
  type: RuntimeDefault
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
