#!/usr/bin/env bash
# Checks deploy/ offline (`make test` runs it):
# - every Kubernetes resource validates strictly against the API schema of the oldest
#   Kubernetes supported and of the newest kubernetes-validate knows;
# - scripts/check-deploy.py: the Pod Security `restricted` profile, autoscalers, the custom
#   resources kubernetes-validate does not know (KEDA, Prometheus Operator), the queues KEDA
#   scales on, metric names, the documented alerts, and every file a kustomization names;
# - when kustomize or kubectl is installed, the same again on what each overlay builds to, and
#   on each component built over the base.
set -euo pipefail
cd "$(dirname "$0")/.."
validate=${BECKON_KUBERNETES_VALIDATE:-kubernetes-validate}
python=${BECKON_TEST_PYTHON:-python3}
# The oldest Kubernetes docs/production.md supports, and the newest kubernetes-validate knows.
versions="1.30.0 1.37.0"
status=0

core=$("$python" scripts/check-deploy.py core-files deploy/k8s)
"$python" scripts/check-deploy.py source deploy/k8s || status=1
# What kubernetes-validate checks: the source files above, then what each build gives.
to_validate=$core

if command -v kustomize >/dev/null; then
  build=(kustomize build)
elif command -v kubectl >/dev/null; then
  build=(kubectl kustomize)
else
  build=()
  echo "deploy/: neither kustomize nor kubectl is installed; overlays not built" >&2
fi
builds=0
if [ ${#build[@]} -gt 0 ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  targets=$(find deploy/k8s/overlays -name kustomization.yaml -exec dirname {} \; | sort)
  for component in deploy/k8s/components/*/; do
    dir=$tmp/base-with-$(basename "$component")
    mkdir "$dir"
    printf 'resources: [%s]\ncomponents: [%s]\n' \
      "$(realpath --relative-to="$dir" deploy/k8s/base)" \
      "$(realpath --relative-to="$dir" "$component")" >"$dir/kustomization.yaml"
    targets="$targets $dir"
  done
  for target in $targets; do
    out=$tmp/$(basename "$target").yaml
    if ! "${build[@]}" "$target" >"$out"; then
      echo "$target does not build" >&2
      status=1
      continue
    fi
    "$python" scripts/check-deploy.py rendered "$out" "$out.core" || status=1
    to_validate="$to_validate $out.core"
    builds=$((builds + 1))
  done
fi
for v in $versions; do
  "$validate" --strict --quiet -k "$v" $to_validate || status=1
done

[ "$status" = 0 ] && echo "deploy/: $(echo "$core" | wc -w) manifest files and $builds builds valid"
exit "$status"
