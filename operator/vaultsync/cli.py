"""The `vaultsync` command: `run` starts the operator; `demo` runs it on a local stack."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from vaultsync import __version__
from vaultsync.settings import SettingsError, add_arguments, load_settings


def _run(args: argparse.Namespace) -> int:
    import kopf

    from vaultsync import logs
    from vaultsync.handlers import lifecycle, vaultsecrets  # noqa: F401 - registers the handlers

    try:
        settings = load_settings(args)
    except SettingsError as exc:
        print(f"vaultsync: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level)
    if not settings.vault_addr:
        print(
            "vaultsync: VAULT_ADDR (or --vault-addr) is required: the address of Vault or OpenBao",
            file=sys.stderr,
        )
        return 2
    logging.getLogger("vaultsync").info("vaultsync %s starting", __version__)
    namespaces = list(settings.watch_namespaces)
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        memo=kopf.Memo(settings=settings),
        liveness_endpoint=None,
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vaultsync.devstack.demo import run_demo

    return run_demo(Path(args.workdir) if args.workdir else None)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaultsync", description="Keeps Kubernetes Secrets in sync with Vault."
    )
    parser.add_argument("--version", action="version", version=f"vaultsync {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator (in-cluster config in a pod, else KUBECONFIG)")
    add_arguments(run)
    run.set_defaults(func=_run)
    demo = commands.add_parser(
        "demo", help="start a local API server and OpenBao and run the operator on them"
    )
    demo.add_argument("--workdir", help="where the stack keeps its files (default: a temporary directory)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
