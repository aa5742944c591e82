{{/* The chart's name, at most 63 characters (a label value). */}}
{{- define "vaultsync.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Base name of every object: the release name when it already contains the chart's name (release
"vaultsync" gives the same names as deploy/), else "<release>-vaultsync". Cluster-scoped objects
(ClusterRoles and their bindings) carry it too, so two releases never share them.
*/}}
{{- define "vaultsync.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the operator's pods (Deployment, Service, PodDisruptionBudget, anti-affinity). */}}
{{- define "vaultsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vaultsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Labels of every object. */}}
{{- define "vaultsync.labels" -}}
app.kubernetes.io/name: {{ include "vaultsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: vaultsync
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "vaultsync.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The ServiceAccount bound by the RBAC below, as an RBAC subject. */}}
{{- define "vaultsync.subject" -}}
- kind: ServiceAccount
  name: {{ include "vaultsync.fullname" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}

{{/*
The rules the operator needs in every namespace it serves: a ClusterRole in cluster-wide mode, a Role
per namespace of watch.namespaces otherwise. The same rules as deploy/base/rbac-cluster.yaml
(tests/test_chart.py fails when they differ); deploy/README.md explains each.
*/}}
{{- define "vaultsync.servedNamespaceRules" -}}
# Watch VaultSecrets (get, list, watch: the operator's watch and reads). patch: add and remove the
# finalizer vaultsync.io/merge-cleanup that creationPolicy Merge needs (our keys are removed from a Secret
# we do not own before the VaultSecret goes away), with a merge patch.
- apiGroups: [vaultsync.io]
  resources: [vaultsecrets]
  verbs: [get, list, watch, patch]
# Report the result of each sync with a merge patch of the status subresource: the Ready condition,
# secretName, lastSyncTime, vaultVersion and secretMAC.
- apiGroups: [vaultsync.io]
  resources: [vaultsecrets/status]
  verbs: [patch]
# Target Secrets are created with an ownerReference (blockOwnerDeletion) to their VaultSecret
# (creationPolicy Owner); the OwnerReferencesPermissionEnforcement admission plugin (OpenShift, hardened
# clusters) demands update on the owner's finalizers subresource for that.
- apiGroups: [vaultsync.io]
  resources: [vaultsecrets/finalizers]
  verbs: [update]
# The target Secrets: create them and replace their data (create, update); watch the managed ones so that
# a hand edit or deletion is repaired at once (get, list, watch); delete the old Secret when target.name or
# its type changes (delete). RBAC cannot restrict by label: the operator itself lists and watches only
# Secrets labelled app.kubernetes.io/managed-by=vaultsync.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update, delete]
# Events on VaultSecrets (Synced, Rotated, DriftRepaired, failures by reason) through the core v1 API; each
# is a new Event, so no patch.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# spec.auth.serviceAccountName: short-lived tokens of a ServiceAccount of the VaultSecret's namespace
# (TokenRequest API) to log in to Vault as that identity. Only the subresource: ServiceAccounts themselves
# are neither read nor changed.
- apiGroups: [""]
  resources: [serviceaccounts/token]
  verbs: [create]
# spec.rolloutRestartTargets: set the pod-template annotation vaultsync.io/restartedAt with a strategic
# merge patch when the Secret's data changed. Workloads are never read, created or deleted.
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [patch]
{{- end -}}
