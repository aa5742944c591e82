"""The engine parses a spec once per generation; templates compile and render in the render workers (once per
source there), and a template that does not compile is not compiled or sent again until the spec changes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest

from vaultsync.core.errors import TEMPLATE_ERROR
from vaultsync.core.shaping import SourceData
from vaultsync.engine import renderpool
from vaultsync.engine.engine import Engine, ObjectState, trim_body
from vaultsync.engine.renderpool import RenderPool, TemplateCompileError
from vaultsync.settings import Settings


def vaultsecret(generation: int, spec: Mapping[str, Any]) -> dict[str, Any]:
    return trim_body(
        {
            "apiVersion": "vaultsync.io/v1alpha1",
            "kind": "VaultSecret",
            "metadata": {"name": "db", "namespace": "shop", "uid": "u-1", "generation": generation},
            "spec": dict(spec),
        }
    )


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for a whole test: the pool's streams belong to the loop that started it."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def engine(loop: asyncio.AbstractEventLoop) -> Iterator[Engine]:
    pool = RenderPool(1, wall_seconds=20.0)
    engine = Engine(
        Settings(), cast(Any, None), cast(Any, None), b"k" * 32, cast(Any, None), render_pool=pool
    )
    yield engine
    loop.run_until_complete(pool.close())


SPEC = {"path": "apps/shop/db", "templates": {"url": "db://{{ username }}"}}
DATA = {"username": "app"}


def shape(engine: Engine, loop: asyncio.AbstractEventLoop, state: ObjectState) -> dict[str, bytes]:
    spec = engine._parse(state)
    sources = [SourceData(source=spec.sources[0], data=DATA, version=1, created_time=None)]
    result: dict[str, bytes] = loop.run_until_complete(
        engine._shape(("shop", "db"), state, spec, sources, state.meta.get("generation"))
    )
    return result


def test_templates_are_compiled_once_per_generation(engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
    state = ObjectState(body=vaultsecret(1, SPEC))
    spec = engine._parse(state)
    for _ in range(3):  # refreshes and status-only updates of the same generation
        state.body = vaultsecret(1, SPEC)
        assert engine._parse(state) is spec

    async def renders(count: int, body: dict[str, Any]) -> list[dict[str, bytes]]:
        state.body = body
        spec = engine._parse(state)
        sources = [SourceData(source=spec.sources[0], data=DATA, version=1, created_time=None)]
        return [
            await engine._shape(("shop", "db"), state, spec, sources, body["metadata"]["generation"])
            for _ in range(count)
        ]

    async def scenario() -> tuple[list[dict[str, bytes]], int, list[dict[str, bytes]], int]:
        first = await renders(3, vaultsecret(1, SPEC))
        compiles_first = engine.render_pool.compiles
        changed = {**SPEC, "templates": {"url": "db://{{ username }}:{{ username|length }}"}}
        second = await renders(2, vaultsecret(2, changed))
        return first, compiles_first, second, engine.render_pool.compiles

    first, compiles_first, second, compiles_total = loop.run_until_complete(scenario())
    assert first == [{"url": b"db://app", "username": b"app"}] * 3
    assert compiles_first == 1  # the worker compiled once for three renders
    assert second == [{"url": b"db://app:3", "username": b"app"}] * 2
    assert compiles_total == 2
    spec2 = engine._parse(state)
    assert spec2.templates == {"url": "db://{{ username }}:{{ username|length }}"}
    assert state.parsed == (2, spec2)


def test_templates_compile_in_a_render_worker_not_in_the_operator_process(
    engine: Engine, loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Mapping[str, str]] = []
    real = renderpool.compile_templates

    def recording(templates: Mapping[str, str]) -> Any:
        calls.append(templates)
        return real(templates)

    # Workers come from the fork server, which does not see this patch: a compile here would be recorded.
    monkeypatch.setattr(renderpool, "compile_templates", recording)
    with_templates = ObjectState(body=vaultsecret(1, SPEC))
    assert shape(engine, loop, with_templates) == {"url": b"db://app", "username": b"app"}
    assert engine.render_pool.compiles == 1
    plain = ObjectState(body=vaultsecret(1, {"path": "apps/shop/db"}))
    assert shape(engine, loop, plain) == {"username": b"app"}  # no templates, Opaque: inline, no worker job
    assert engine.render_pool.compiles == 1
    assert calls == []


def test_a_compile_failure_is_cached_per_generation(engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
    broken = {**SPEC, "templates": {"url": "{{ username " + "x" * 60_000}}
    state = ObjectState(body=vaultsecret(1, broken))
    with pytest.raises(TemplateCompileError) as first:
        shape(engine, loop, state)
    assert first.value.reason == TEMPLATE_ERROR
    assert first.value.message.startswith("template 'url': syntax error at line 1")
    sent = engine.render_pool.jobs
    for _ in range(3):  # retries and refreshes of the same generation: not compiled nor sent again
        with pytest.raises(TemplateCompileError) as again:
            shape(engine, loop, state)
        assert again.value is first.value
    assert engine.render_pool.jobs == sent
    assert engine.render_pool.compiles == 1

    state.body = vaultsecret(2, SPEC)  # fixed
    assert shape(engine, loop, state) == {"url": b"db://app", "username": b"app"}
    assert engine.render_pool.jobs == sent + 1
