"""The render pool: a job over a worker's memory, CPU or wall-clock limit fails alone (TemplateError naming
the limit), its worker is replaced, and the next job and the other jobs succeed."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from vaultsync.core.errors import INVALID_DATA, TEMPLATE_ERROR, SyncError
from vaultsync.core.shaping import SourceData
from vaultsync.core.spec import parse_spec
from vaultsync.engine.renderpool import CompileCache, RenderJob, RenderPool, TemplateCompileError, needs_pool

# Jobs: the workers unpickle them by importing this module.


class Echo:
    def run(self, cache: CompileCache) -> dict[str, bytes]:
        return {"pid": str(os.getpid()).encode()}


class Allocate:
    """Allocates far beyond the worker's RLIMIT_AS (512 MiB here, 256 MiB by default)."""

    def run(self, cache: CompileCache) -> dict[str, bytes]:
        blocks = [bytearray(64 * 2**20) for _ in range(64)]
        return {"size": str(len(blocks)).encode()}


class Spin:
    """Spins in one C call that no budget check interrupts."""

    def run(self, cache: CompileCache) -> dict[str, bytes]:
        while True:
            sum(range(10_000_000))


class Sleep:
    def run(self, cache: CompileCache) -> dict[str, bytes]:
        time.sleep(60)
        return {}


class Exit:
    def run(self, cache: CompileCache) -> dict[str, bytes]:
        os._exit(3)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def run_pool(loop: asyncio.AbstractEventLoop, pool: RenderPool, scenario: Any) -> Any:
    async def wrapped() -> Any:
        try:
            return await scenario(pool)
        finally:
            await pool.close()

    return loop.run_until_complete(wrapped())


async def outcome(pool: RenderPool, job: Any, **kwargs: Any) -> dict[str, bytes] | SyncError:
    try:
        return await pool.shape(job, **kwargs)
    except SyncError as exc:
        return exc


def test_a_job_over_the_memory_limit_fails_and_the_next_succeeds(loop: asyncio.AbstractEventLoop) -> None:
    async def scenario(pool: RenderPool) -> tuple[Any, Any]:
        return await outcome(pool, Allocate()), await outcome(pool, Echo())

    failed, after = run_pool(loop, RenderPool(1, memory_bytes=512 * 2**20, wall_seconds=30), scenario)
    assert isinstance(failed, SyncError)
    assert failed.reason == TEMPLATE_ERROR
    assert "memory" in failed.message
    assert "512 MiB" in failed.message
    assert isinstance(after, dict)


def test_a_job_past_the_cpu_limit_kills_its_worker_which_is_replaced(loop: asyncio.AbstractEventLoop) -> None:
    async def scenario(pool: RenderPool) -> tuple[Any, Any, Any, int]:
        before = await outcome(pool, Echo())
        failed = await outcome(pool, Spin())
        return before, failed, await outcome(pool, Echo()), pool.replaced

    pool = RenderPool(1, wall_seconds=60, cpu_seconds=1)
    before, failed, after, replaced = run_pool(loop, pool, scenario)
    assert isinstance(failed, SyncError)
    assert failed.reason == TEMPLATE_ERROR
    assert "more than 1 s of CPU time" in failed.message
    assert isinstance(before, dict)
    assert isinstance(after, dict)
    assert after["pid"] != before["pid"]  # a new worker
    assert replaced == 1


def test_a_job_past_the_wall_clock_limit_is_killed_and_others_go_on(loop: asyncio.AbstractEventLoop) -> None:
    async def scenario(pool: RenderPool) -> tuple[Any, list[Any], Any]:
        slow = asyncio.ensure_future(outcome(pool, Sleep()))
        await asyncio.sleep(0)
        # The other worker serves these while the first is stuck.
        meanwhile = [await outcome(pool, Echo()) for _ in range(3)]
        done_before_slow = not slow.done()
        failed = await slow
        assert done_before_slow
        return failed, meanwhile, await outcome(pool, Echo())

    failed, meanwhile, after = run_pool(loop, RenderPool(2, wall_seconds=3), scenario)
    assert isinstance(failed, SyncError)
    assert failed.reason == TEMPLATE_ERROR
    assert "took longer than 3 s (VAULTSYNC_RENDER_TIMEOUT)" in failed.message
    assert all(isinstance(m, dict) for m in meanwhile)
    assert isinstance(after, dict)


def test_a_worker_that_dies_fails_only_its_job(loop: asyncio.AbstractEventLoop) -> None:
    async def scenario(pool: RenderPool) -> tuple[Any, Any]:
        return await outcome(pool, Exit(), has_templates=False), await outcome(pool, Echo())

    failed, after = run_pool(loop, RenderPool(1), scenario)
    assert isinstance(failed, SyncError)
    assert failed.reason == INVALID_DATA  # a type check without templates
    assert "render worker stopped during checking the Secret type" in failed.message
    assert "exit code 3" in failed.message
    assert isinstance(after, dict)


def spec_and_sources(templates: dict[str, str], data: dict[str, Any], **fields: Any) -> RenderJob:
    spec = parse_spec(
        {"path": "apps/db", "templates": templates, **fields},
        name="db",
        default_mount="secret",
        default_refresh=3600,
    )
    sources = (SourceData(source=spec.sources[0], data=data, version=1, created_time=None),)
    return RenderJob(spec=spec, sources=sources, namespace="shop", name="db")


def test_render_jobs_compile_once_and_report_errors_without_values(loop: asyncio.AbstractEventLoop) -> None:
    secret = "hunter2-very-secret"
    good = spec_and_sources({"url": "db://{{ password }}"}, {"password": secret})
    hostile = spec_and_sources({"x": "{{ ('%(a)1000000s' * 1000) % {'a': password} }}"}, {"password": secret})
    broken = spec_and_sources({"x": "{{ password "}, {"password": secret})

    async def scenario(pool: RenderPool) -> list[Any]:
        results = [await outcome(pool, good) for _ in range(3)]
        results += [await outcome(pool, hostile), await outcome(pool, broken), await outcome(pool, good)]
        return [*results, pool.compiles]

    *results, compiles = run_pool(loop, RenderPool(1), scenario)
    assert results[:3] == [{"password": secret.encode(), "url": f"db://{secret}".encode()}] * 3
    assert isinstance(results[3], SyncError)
    assert results[3].reason == TEMPLATE_ERROR
    assert "'%' formatting: the result would be longer" in results[3].message
    assert isinstance(results[4], TemplateCompileError)
    assert results[4].message.startswith("template 'x': syntax error")
    assert results[5] == results[0]
    assert compiles == 3  # good, hostile and broken once each
    for result in results[3:5]:
        assert secret not in str(result)


def test_the_tls_pem_payload_completes_in_the_worker(loop: asyncio.AbstractEventLoop) -> None:
    # Issue 10 finding 4: 288 KB of BEGIN lines took 51 s in the quadratic regex, on the event loop.
    payload = "-----BEGIN A-----\n" * (288 * 1024 // 18)
    job = spec_and_sources(
        {"tls.crt": "{{ p }}", "tls.key": "{{ p }}"}, {"p": payload}, type="kubernetes.io/tls"
    )

    async def scenario(pool: RenderPool) -> Any:
        return await outcome(pool, job)

    failed = run_pool(loop, RenderPool(1), scenario)
    assert isinstance(failed, SyncError)
    assert failed.reason == INVALID_DATA
    assert "'tls.crt' holds no PEM certificate" in failed.message


def test_which_specs_use_the_pool() -> None:
    def spec(**fields: Any) -> Any:
        return parse_spec({"path": "a/b", **fields}, name="n", default_mount="secret", default_refresh=60)

    assert needs_pool(spec(templates={"a": "{{ x }}"}))
    for secret_type in (
        "kubernetes.io/tls",
        "kubernetes.io/dockerconfigjson",
        "kubernetes.io/dockercfg",
        "kubernetes.io/basic-auth",
        "kubernetes.io/ssh-auth",
    ):
        assert needs_pool(spec(type=secret_type))
    assert not needs_pool(spec())
    assert not needs_pool(spec(type="example.com/custom"))
