#!/usr/bin/env bash
# Checks deploy/ offline: every file a kustomization names exists, and every Kubernetes
# resource validates strictly against the Kubernetes API schema (kubernetes-validate).
set -euo pipefail
cd "$(dirname "$0")/.."
validate=${BECKON_KUBERNETES_VALIDATE:-kubernetes-validate}
status=0
for k in $(find deploy/k8s -name kustomization.yaml); do
  dir=$(dirname "$k")
  for r in $(awk '/^resources:/{f=1;next} /^[a-z]/{f=0} f && /^ *- /{print $2}' "$k"); do
    if [ ! -e "$dir/$r" ]; then
      echo "$k names $r, which does not exist" >&2
      status=1
    fi
  done
done
resources=$(find deploy/k8s -name '*.yaml' ! -name kustomization.yaml | sort)
"$validate" --strict --quiet $resources || status=1
[ "$status" = 0 ] && echo "deploy/: $(echo "$resources" | wc -l) manifest files valid"
exit "$status"
