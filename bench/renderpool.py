"""What the render pool costs per templated sync: the same small template shaped N times in the operator's
thread (as before the pool) and through the pool's worker processes (pickle, socket, JSON, back)::

    .venv/bin/python -m bench.renderpool --n 1000

Also times a plain copy without templates (shaped inline, no pool) for 1 KiB and 1 MiB of Vault data, to
show that its cost is linear in Vault's answer. No stack needed.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vaultsync.core.shaping import SourceData, shape_secret
from vaultsync.core.spec import VaultSecretSpec, parse_spec
from vaultsync.core.templates import CompiledTemplates, compile_templates
from vaultsync.engine.renderpool import RenderJob, RenderPool

TEMPLATES = {
    "DATABASE_URL": "postgres://{{ username }}:{{ password|urlquote }}@{{ host }}:5432/{{ name }}",
    "config.json": "{{ {'user': username, 'host': host}|tojson }}",
}
DATA = {"username": "app", "password": "p@ss/w:rd?&=", "host": "db.example.com"}


def _spec(fields: dict[str, Any]) -> VaultSecretSpec:
    return parse_spec(
        {"path": "apps/shop/db", **fields}, name="db", default_mount="secret", default_refresh=3600
    )


def _sources(spec: VaultSecretSpec, data: dict[str, Any]) -> list[SourceData]:
    return [SourceData(source=spec.sources[0], data=data, version=1, created_time=None)]


def _inline(spec: VaultSecretSpec, sources: list[SourceData], templates: CompiledTemplates, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        shape_secret(spec, sources, templates=templates, namespace="shop", name="db")
    return (time.perf_counter() - started) / n


async def _threaded(
    spec: VaultSecretSpec, sources: list[SourceData], templates: CompiledTemplates, n: int
) -> float:
    """As the engine did before the pool: ``run_in_executor`` on a thread pool of its own."""
    loop = asyncio.get_running_loop()
    shape = functools.partial(shape_secret, spec, sources, templates=templates, namespace="shop", name="db")
    with ThreadPoolExecutor(4) as executor:
        started = time.perf_counter()
        for _ in range(n):
            await loop.run_in_executor(executor, shape)
        return (time.perf_counter() - started) / n


async def _pooled(job: RenderJob, n: int, workers: int) -> tuple[float, float]:
    """Wall time and the operator process's own CPU time (not the workers') per render."""
    pool = RenderPool(workers)
    try:
        await pool.start()
        await pool.shape(job)  # compiles once (cached by source in the worker afterwards)
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            await pool.shape(job)
        return (time.perf_counter() - started) / n, (time.process_time() - cpu) / n
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.renderpool", description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="renders of each kind (default 1000)")
    parser.add_argument("--workers", type=int, default=4, help="render workers (default 4)")
    args = parser.parse_args()

    spec = _spec({"templates": TEMPLATES})
    sources = _sources(spec, DATA)
    compiled = compile_templates(spec.templates)
    inline = _inline(spec, sources, compiled, args.n)
    threaded = asyncio.run(_threaded(spec, sources, compiled, args.n))
    job = RenderJob(spec=spec, sources=tuple(sources), namespace="shop", name="db")
    pooled, pooled_cpu = asyncio.run(_pooled(job, args.n, args.workers))

    plain = _spec({})
    empty = compile_templates({})
    copies = {}
    for label, size in (("1KiB", 1024), ("1MiB", 1024 * 1024)):
        data = {f"k{i}": "v" * 1000 for i in range(size // 1024)}
        copies[label] = _inline(plain, _sources(plain, data), empty, max(10, args.n // 100))

    print(f"templated sync, {args.n} renders of {len(TEMPLATES)} small templates:")
    print(f"  in the operator's thread   {inline * 1e6:8.0f} µs per render")
    print(f"  via a thread pool (before) {threaded * 1e6:8.0f} µs per render")
    print(f"  through the render pool    {pooled * 1e6:8.0f} µs per render (one at a time)")
    print(f"  operator CPU with the pool {pooled_cpu * 1e6:8.0f} µs per render (the rest runs in the worker)")
    print(f"  pool / in-thread           {pooled / inline:8.1f} x (+{(pooled - inline) * 1e6:.0f} µs)")
    print(f"  pool / thread pool         {pooled / threaded:8.1f} x (+{(pooled - threaded) * 1e6:.0f} µs)")
    print("plain copy without templates (inline):")
    for label, seconds in copies.items():
        print(f"  {label} of Vault data        {seconds * 1e3:8.2f} ms per sync")
    print(
        json.dumps(
            {
                "n": args.n,
                "inline_s": inline,
                "thread_pool_s": threaded,
                "pool_s": pooled,
                "pool_operator_cpu_s": pooled_cpu,
                "ratio": pooled / inline,
                "plain_copy_s": copies,
            }
        )
    )


if __name__ == "__main__":  # the pool's fork server imports __main__ (multiprocessing's documented idiom)
    main()
