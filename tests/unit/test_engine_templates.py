"""The engine parses a spec and compiles its templates once per generation, off the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest

from vaultsync.core.templates import CompiledTemplates
from vaultsync.engine import engine as engine_module
from vaultsync.engine.engine import Engine, ObjectState, trim_body
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
def engine() -> Iterator[Engine]:
    engine = Engine(Settings(), cast(Any, None), cast(Any, None), b"k" * 32, cast(Any, None))
    yield engine
    engine.template_pool.shutdown()


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict[str, str], str]]:
    """Every compile_templates call the engine makes: (templates, thread name)."""
    calls: list[tuple[dict[str, str], str]] = []
    real = engine_module.compile_templates

    def recording(templates: Mapping[str, str]) -> CompiledTemplates:
        calls.append((dict(templates), threading.current_thread().name))
        return real(templates)

    monkeypatch.setattr(engine_module, "compile_templates", recording)
    return calls


SPEC = {"path": "apps/shop/db", "templates": {"url": "db://{{ username }}"}}


def test_templates_are_compiled_once_per_generation(
    engine: Engine, compiles: list[tuple[dict[str, str], str]]
) -> None:
    state = ObjectState(body=vaultsecret(1, SPEC))
    spec, compiled = engine._parse(state)
    for _ in range(3):  # refreshes and status-only updates of the same generation
        state.body = vaultsecret(1, SPEC)
        again = engine._parse(state)
        assert again[0] is spec
        assert again[1] is compiled
    assert [templates for templates, _ in compiles] == [{"url": "db://{{ username }}"}]

    changed = {**SPEC, "templates": {"url": "db://{{ username }}:{{ password }}"}}
    state.body = vaultsecret(2, changed)
    spec2, compiled2 = engine._parse(state)
    assert compiled2 is not compiled
    assert spec2.templates == {"url": "db://{{ username }}:{{ password }}"}
    assert len(compiles) == 2
    assert state.compiled == (2, spec2, compiled2)


def test_templates_compile_in_the_template_pool_not_on_the_event_loop(
    engine: Engine, compiles: list[tuple[dict[str, str], str]]
) -> None:
    async def parse_both() -> tuple[str, int]:
        loop_thread = threading.current_thread().name
        with_templates = ObjectState(body=vaultsecret(1, SPEC))
        await engine._parse_off_loop(with_templates)
        await engine._parse_off_loop(with_templates)  # cached: no second compile
        plain = ObjectState(body=vaultsecret(1, {"path": "apps/shop/db"}))
        spec, compiled = await engine._parse_off_loop(plain)
        assert len(compiled) == 0
        assert spec.templates == {}
        return loop_thread, len(compiles)

    loop_thread, count = asyncio.run(parse_both())
    assert count == 2
    (_, first_thread), (_, plain_thread) = compiles
    assert first_thread.startswith("vaultsync-templates")
    assert plain_thread == loop_thread  # no thread hop for a spec without templates
