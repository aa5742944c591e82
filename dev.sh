#!/usr/bin/env bash
# The project's two commands, on a fresh machine or a used one:
#   ./dev.sh demo   a local API server + OpenBao + the operator, with an example VaultSecret synced
#   ./dev.sh test   lint, type checks and the whole test suite (unit and end-to-end on the real stack)
# Both create the virtualenv (.venv) and install the project when needed; the local stack builds or reuses
# the cached kube-apiserver (~/.cache/vaultsync) and installs etcd from Debian on first use.
set -euo pipefail
cd "$(dirname "$0")"

python=${PYTHON:-python3}
venv=.venv
stamp="$venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"

ensure_venv() {
  if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"' || exit 1
    "$python" -m venv "$venv"
  fi
  if [[ ! -f "$stamp" ]]; then
    echo "== installing vaultsync and its development tools into $venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install -q -e '.[dev]'
    rm -f "$venv"/.installed-* && touch "$stamp"
  fi
}

run_tests() {
  echo "== ruff"
  "$venv/bin/ruff" check operator tests bench
  "$venv/bin/ruff" format --check operator tests bench
  echo "== mypy"
  "$venv/bin/mypy"
  echo "== local stack binaries (first run builds kube-apiserver: about 5 minutes)"
  "$venv/bin/python" -m vaultsync.devstack prepare
  echo "== pytest"
  set +e
  "$venv/bin/python" -m pytest "$@"
  code=$?
  set -e
  if [[ $code -eq 5 ]]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
  fi
  exit $code
}

command=${1:-}
shift || true
case "$command" in
  demo) ensure_venv; exec "$venv/bin/vaultsync" demo "$@" ;;
  test) ensure_venv; run_tests "$@" ;;
  *) echo "usage: ./dev.sh demo | test [pytest args]" >&2; exit 2 ;;
esac
