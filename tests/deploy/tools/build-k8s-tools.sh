#!/usr/bin/env bash
# Build the real Kubernetes tools the deployment tests use, from the Go module proxy only,
# into a cache outside the repository (reused by every later run on the machine):
#
#   tests/deploy/tools/build-k8s-tools.sh helm            # helm v3.22.0        (~300 CPU-s cold)
#   tests/deploy/tools/build-k8s-tools.sh etcd            # etcd v3.7.3         (~120 CPU-s cold)
#   tests/deploy/tools/build-k8s-tools.sh kube-apiserver  # kube-apiserver v1.37.2 (~1,200 CPU-s cold)
#   tests/deploy/tools/build-k8s-tools.sh all
#
# Prints the path of each binary. A binary already in the cache is not rebuilt; a build
# that another run of this script has started is waited for (one lock per tool), so .ci/run
# can build in the background while the tests that need a tool wait only for that one.
# Cache: $KUBELOGS_CI_CACHE (default ~/.cache/kubelogs-ci); Go's own caches as configured.
set -euo pipefail

CACHE="${KUBELOGS_CI_CACHE:-$HOME/.cache/kubelogs-ci}"
HELM_VERSION=v3.22.0
ETCD_VERSION=v3.7.3
K8S_VERSION=v1.37.2
# The Kubernetes version helm assumes when no cluster is asked (.Capabilities.KubeVersion).
HELM_KUBE_MAJOR=1
HELM_KUBE_MINOR=37

export GOFLAGS="${GOFLAGS:--trimpath}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"

build_helm() {
  local dir="$CACHE/bin/helm-$HELM_VERSION"
  if [[ ! -x "$dir/helm" ]]; then
    mkdir -p "$dir"
    GOBIN="$dir" go install -ldflags "-s -w \
      -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$HELM_KUBE_MAJOR \
      -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$HELM_KUBE_MINOR \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$HELM_KUBE_MAJOR \
      -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$HELM_KUBE_MINOR" \
      "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >&2
  fi
  echo "$dir/helm"
}

build_etcd() {
  local out="$CACHE/bin/etcd-$ETCD_VERSION/etcd"
  if [[ ! -x "$out" ]]; then
    # etcd is not `go install`-able (replace directives): a throw-away main module.
    local mod="$CACHE/src/etcd-$ETCD_VERSION"
    rm -rf "$mod" && mkdir -p "$mod" "$(dirname "$out")"
    cat > "$mod/main.go" <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
    (
      cd "$mod"
      go mod init kubelogs.invalid/etcd >&2
      go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@$ETCD_VERSION" \
        "go.etcd.io/etcd/api/v3@$ETCD_VERSION" "go.etcd.io/etcd/client/pkg/v3@$ETCD_VERSION" \
        "go.etcd.io/etcd/client/v3@$ETCD_VERSION" "go.etcd.io/etcd/pkg/v3@$ETCD_VERSION" >&2
      go mod tidy >&2
      go build -ldflags "-s -w" -o "$out.tmp" . >&2
      mv "$out.tmp" "$out"
    )
  fi
  echo "$out"
}

build_kube_apiserver() {
  local out="$CACHE/bin/kube-apiserver-$K8S_VERSION/kube-apiserver"
  if [[ ! -x "$out" ]]; then
    # k8s.io/kubernetes is not meant to be a dependency: its staging modules are replaced by
    # ./staging paths in its go.mod. A throw-away module replaces each with its published
    # v0.X.Y version (the block is generated from k8s.io/kubernetes' own go.mod).
    local mod="$CACHE/src/kube-apiserver-$K8S_VERSION"
    local staging="v0.${K8S_VERSION#v1.}"
    rm -rf "$mod" && mkdir -p "$mod" "$(dirname "$out")"
    (
      cd "$mod"
      go mod init kubelogs.invalid/kube-apiserver >&2
      local upstream
      upstream="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
        | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')"
      [[ -f "$upstream" ]] || { echo "no go.mod for k8s.io/kubernetes@$K8S_VERSION" >&2; exit 1; }
      {
        echo
        echo "require k8s.io/kubernetes $K8S_VERSION"
        echo
        echo "replace ("
        sed -n 's|^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/src/.*$|\t\1 => \1 '"$staging"'|p' "$upstream"
        echo ")"
      } >> go.mod
      local n
      n="$(grep -c "=> k8s.io/.* $staging" go.mod)"
      echo "replaced $n staging modules with $staging" >&2
      [[ "$n" -ge 20 ]] || { echo "too few staging modules found in $upstream" >&2; exit 1; }
      go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" >&2
      go build -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION" \
        -o "$out.tmp" k8s.io/kubernetes/cmd/kube-apiserver >&2
      mv "$out.tmp" "$out"
    )
  fi
  echo "$out"
}

locked() {  # locked NAME FUNCTION: run FUNCTION holding NAME's lock
  mkdir -p "$CACHE/locks"
  (
    flock 9
    "$2"
  ) 9>"$CACHE/locks/$1.lock"
}

case "${1:-all}" in
  helm) locked helm build_helm ;;
  etcd) locked etcd build_etcd ;;
  kube-apiserver) locked kube-apiserver build_kube_apiserver ;;
  all)
    locked helm build_helm
    locked etcd build_etcd
    locked kube-apiserver build_kube_apiserver
    ;;
  *) echo "usage: $0 helm|etcd|kube-apiserver|all" >&2; exit 1 ;;
esac
