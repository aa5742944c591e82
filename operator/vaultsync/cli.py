"""The `vaultsync` command: `run` starts the operator; `doctor` diagnoses the Vault set-up from where it
runs; `demo` runs the operator on a local stack; `convert` turns the peer operators' manifests into ours."""

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
    from vaultsync.handlers import lifecycle  # noqa: F401 - registers the handlers

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
    try:
        kopf.run(
            standalone=True,
            clusterwide=not namespaces,
            namespaces=namespaces,
            memo=kopf.Memo(settings=settings),
            liveness_endpoint=None,
        )
    except Exception as exc:
        # kopf has logged the cause (e.g. "Activity 'start' failed permanently: <what to fix>"); one line
        # more, not a traceback on stderr, which would break JSON logs.
        logging.getLogger("vaultsync").error("vaultsync stopped: it could not run (%s)", type(exc).__name__)
        return 1
    return 0


DOCTOR_SETTINGS = (
    "vault_addr",
    "vault_cacert",
    "vault_namespace",
    "vault_timeout",
    "auth_method",
    "auth_mount",
    "auth_role",
    "auth_audience",
    "token_file",
    "default_identity_namespaces",
    "default_mount",
)


def _doctor(args: argparse.Namespace) -> int:
    from vaultsync.doctor import DoctorOptions, run_doctor

    try:
        settings = load_settings(args)
    except SettingsError as exc:
        print(f"vaultsync doctor: {exc}", file=sys.stderr)
        return 2
    options = DoctorOptions(
        settings=settings,
        namespace=args.sa_namespace,
        service_account=args.service_account,
        path=args.path,
        mount=args.mount,
        kv=args.kv,
        kv_version=args.kv_version,
    )
    return run_doctor(options, lambda check: print(check.line(), flush=True))


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vaultsync.devstack.demo import run_demo

    return run_demo(Path(args.workdir) if args.workdir else None)


def _convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from vaultsync.migrate import EXIT_USAGE, Options, convert

    documents: list[object] = []
    for name in args.files or ["-"]:
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
            loaded = list(yaml.safe_load_all(text))
        except OSError as exc:
            print(f"vaultsync convert: cannot read {name}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            print(f"vaultsync convert: {name} is not valid YAML{where}", file=sys.stderr)
            return EXIT_USAGE
        for document in loaded:
            if document is None:
                continue
            if not isinstance(document, dict) or "kind" not in document:
                print(
                    f"vaultsync convert: {name} holds a document that is not a Kubernetes object",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            if document.get("kind") == "List" or str(document.get("kind", "")).endswith("List"):
                documents.extend(document.get("items") or [])
            else:
                documents.append(document)
    options = Options(no_connections=args.no_connections, kv1_mounts=frozenset(args.kv1_mount or ()))
    result = convert(documents, options)
    sys.stdout.write(yaml.safe_dump_all(result.objects, sort_keys=False, explicit_start=True))
    for finding in result.findings:
        if finding.severity == "unmapped" or not args.quiet:
            print(finding.line(), file=sys.stderr)
    return result.exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaultsync", description="Keeps Kubernetes Secrets in sync with Vault."
    )
    parser.add_argument("--version", action="version", version=f"vaultsync {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator (in-cluster config in a pod, else KUBECONFIG)")
    add_arguments(run)
    run.set_defaults(func=_run)
    doctor = commands.add_parser(
        "doctor",
        help="check from here Vault's address and CA, the login, and reading a path; say what is wrong",
        description="Checks, in order: Vault's address, TLS, seal state, the JWT to log in with, the login, "
        "and reading --path. One line per check (OK, FAIL with what to do, SKIP); exit code 1 if any "
        "failed. Prints key names, never tokens or values. Settings come from the same environment "
        "variables as `vaultsync run`.",
    )
    add_arguments(doctor, only=DOCTOR_SETTINGS)
    doctor.add_argument(
        "--namespace",
        dest="sa_namespace",
        help="the VaultSecret's namespace: with --service-account, log in as that ServiceAccount; without, "
        "check that it may use the operator's own identity",
    )
    doctor.add_argument(
        "--service-account",
        help="log in as this ServiceAccount of --namespace (spec.auth.serviceAccountName)",
    )
    doctor.add_argument("--path", help="a path to read, as in spec.path (e.g. apps/shop/db)")
    doctor.add_argument("--mount", help="the secrets mount of --path (default VAULTSYNC_DEFAULT_MOUNT)")
    doctor.add_argument("--kv", choices=("v1", "v2"), default="v2", help="KV version of the mount (v2)")
    doctor.add_argument("--kv-version", type=int, help="a KV v2 version to read (default the latest)")
    doctor.set_defaults(func=_doctor)
    demo = commands.add_parser(
        "demo", help="start a local API server and OpenBao and run the operator on them"
    )
    demo.add_argument("--workdir", help="where the stack keeps its files (default: a temporary directory)")
    demo.set_defaults(func=_demo)
    convert = commands.add_parser(
        "convert",
        help="convert manifests of HashiCorp's Vault Secrets Operator, External Secrets and ricoberger's "
        "vault-secrets-operator into vaultsync objects",
        description="Reads manifests (files, or stdin with -; multi-document YAML) and writes the vaultsync "
        "objects to stdout. Convert objects that refer to each other together (a VaultStaticSecret with its "
        "VaultAuth and VaultConnection, an ExternalSecret with its SecretStore). Objects of other kinds are "
        "passed through unchanged. Everything that could not be mapped is listed on stderr as "
        "'not mapped: <source object>: <field>: <why>'; differences worth knowing as 'note: ...'. Exit code "
        "0: everything mapped; 1: something did not (the rest is written); 2: the input could not be read. "
        "See docs/migration.md.",
    )
    convert.add_argument("files", nargs="*", help="manifest files (default: stdin)")
    convert.add_argument(
        "--no-connections",
        action="store_true",
        help="write no VaultConnection and no spec.connection: the operator's own settings (VAULT_ADDR ...) "
        "serve every converted object",
    )
    convert.add_argument(
        "--kv1-mount",
        action="append",
        metavar="MOUNT",
        help="a KV version 1 mount, for ricoberger's VaultSecrets (their manifests do not say); repeatable",
    )
    convert.add_argument("--quiet", action="store_true", help="list only what was not mapped, not the notes")
    convert.set_defaults(func=_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
