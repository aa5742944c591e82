"""``python -m bench``: start a local stack, run every phase at N VaultSecrets, print a table, write JSON."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bench.harness import BenchConfig, run_bench


def _settings(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--operator-env expects NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def main() -> None:
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--n", type=int, default=defaults.n, help="VaultSecrets to sync (default 1000)")
    parser.add_argument(
        "--latency-samples", type=int, default=defaults.latency_samples, help="one-at-a-time creates (50)"
    )
    parser.add_argument(
        "--refresh",
        type=float,
        default=None,
        help="refreshInterval of the N objects in seconds (default: auto)",
    )
    parser.add_argument(
        "--rotation-interval", type=float, default=defaults.rotation_interval, help="seconds (default 30)"
    )
    parser.add_argument("--rotation-objects", type=int, default=defaults.rotation_objects)
    parser.add_argument(
        "--concurrency", type=int, default=defaults.concurrency, help="of creates and raw (32)"
    )
    parser.add_argument("--results-dir", type=Path, default=defaults.results_dir)
    parser.add_argument(
        "--operator-env", action="append", default=[], metavar="NAME=VALUE", help="extra operator setting"
    )
    parser.add_argument(
        "--profile", action="store_true", help="record the operator with py-spy (first sync, restart)"
    )
    parser.add_argument(
        "--keep-stack", action="store_true", help="keep the stack's work dir (component and audit logs)"
    )
    args = parser.parse_args()
    config = BenchConfig(
        n=args.n,
        latency_samples=args.latency_samples,
        refresh=args.refresh,
        rotation_interval=args.rotation_interval,
        rotation_objects=args.rotation_objects,
        concurrency=args.concurrency,
        results_dir=args.results_dir,
        operator_env=_settings(args.operator_env),
        profile=args.profile,
        keep_stack=args.keep_stack,
    )
    results = asyncio.run(run_bench(config, say=lambda line: print(line, flush=True)))
    sys.exit(0 if results else 1)


if __name__ == "__main__":
    main()
