"""``python -m vaultsync.devstack [run|up] [--workdir DIR] [--vault-tls]``.

* ``run`` (the default): the demo. Starts the local stack, configures it, runs the operator and streams
  its output until Ctrl-C.
* ``prepare``: obtain the binaries only (etcd from Debian, kube-apiserver built once and cached, bao,
  kubectl, prometheus and promtool from Debian for the alert-rule tests, lua5.1 with cjson from Debian for
  the Argo CD health check tests, PostgreSQL from Debian for the short-lived credentials tests).
* ``up``: the same stack and set-up without the operator; prints the environment and stays up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vaultsync.devstack.binaries import (
    StackError,
    find_bao,
    find_etcd,
    find_kube_binaries,
    find_kubectl,
    find_lua,
    find_prometheus,
)
from vaultsync.devstack.demo import run_demo, run_up
from vaultsync.devstack.postgres import find_postgres


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m vaultsync.devstack", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", nargs="?", choices=["run", "up", "prepare"], default="run")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep every file here (default: a temp dir)"
    )
    parser.add_argument("--vault-tls", action="store_true", help="run OpenBao with TLS (-dev-tls)")
    return parser.parse_args(argv)


def prepare() -> int:
    """Obtains every binary the stack needs (builds kube-apiserver on first use) without starting it."""
    try:
        kube = find_kube_binaries()
        prometheus = find_prometheus()
        binaries = (
            find_etcd(),
            kube.apiserver,
            kube.controller_manager,
            find_bao(),
            find_kubectl(),
            prometheus.prometheus,
            prometheus.promtool,
            find_lua(),
            find_postgres().postgres,
        )
        for path in binaries:
            print(f"ready: {path}")
    except StackError as exc:
        print(f"vaultsync: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "prepare":
        return prepare()
    if args.command == "up":
        return run_up(args.workdir, vault_tls=args.vault_tls)
    return run_demo(args.workdir, vault_tls=args.vault_tls)


if __name__ == "__main__":
    sys.exit(main())
