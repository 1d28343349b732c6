"""Knative Serving's admission rules, ported from its Go source at tag knative-v1.21.1.

Knative's webhook refuses a pod spec with fields outside its field masks, and
some masks open only under a config-features flag. These modules re-state those
rules in Python so the chart can be checked without a cluster:

- features.py    pkg/apis/config/features.go: the flags, their defaults, parsing
- fieldmask.py   pkg/apis/serving/fieldmask.go: what each mask keeps
- validation.py  pkg/apis/serving/k8s_validation.go: ValidatePodSpec and below
- annotations.py pkg/apis/autoscaling/annotation_validation.go: ValidateAnnotations
- configmaps.py  the ConfigMap parsers of config-autoscaler, -deployment, -defaults

Each rule cites its file and function. Read with
``git --git-dir=<knative/serving mirror> show knative-v1.21.1:<path>``.

They work on the JSON that reaches Knative's webhook, not on Go structs. KServe
builds the Knative Service from the InferenceService with client-go, whose
``omitempty`` drops empty lists and maps, so an empty list counts as unset here.
"""

SOURCE_TAG = "knative-v1.21.1"
