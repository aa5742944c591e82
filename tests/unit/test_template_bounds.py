"""Issue 10, findings 2 and 3: templates whose output multiplies or whose one call is superlinear are refused
before the value is built (peak memory measured with tracemalloc), and one budget covers all templates of a
VaultSecret."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from vaultsync.core.errors import TEMPLATE_ERROR, SyncError
from vaultsync.core.templates import MAX_STEPS, compile_templates, render_templates

MIB = 1024 * 1024
PEAK_BOUND = 48 * MIB
"""What a refused payload may allocate on the way (the output limit is 1 Mi characters, up to 4 MiB)."""


def peak_of(action: Callable[[], Any]) -> int:
    tracemalloc.start()
    try:
        action()
    except SyncError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


def refused(templates: dict[str, str], context: dict[str, Any], *fragments: str) -> SyncError:
    compiled = compile_templates(templates)
    with pytest.raises(SyncError) as info:
        render_templates(compiled, context)
    assert info.value.reason == TEMPLATE_ERROR
    for fragment in fragments:
        assert fragment in info.value.message, (fragment, info.value.message)
    peak = peak_of(lambda: render_templates(compiled, context))
    assert peak < PEAK_BOUND, f"peak {peak / MIB:.0f} MiB"
    return info.value


BIG = "x" * 1_000_000


def deep_list(depth: int, leaves: int) -> Any:
    value: Any = ["x"] * leaves
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("template", "context", "fragment"),
    [
        # The exact payload of the issue: each width <= 1M, 1,000 of them (peaked near 1 GB).
        ("{{ ('%(a)1000000s' * 1000) % {'a': 'x'} }}", {}, "'%' formatting: the result would be longer"),
        ("{{ ('%(a)s' * 1000) % {'a': big} }}", {"big": BIG}, "'%' formatting: the result would be longer"),
        ("{{ ('%s' * 3) % (big, big, big) }}", {"big": BIG}, "'%' formatting: the result would be longer"),
        ("{{ ('%.1000000f' * 1000) % ((1.5,) * 1000) }}", {}, "'%' formatting: the result would be longer"),
        ("{{ ('{0:>1000000}' * 1000).format('x') }}", {}, "str.format: the result would be longer"),
        ("{{ ('{0}' * 1000).format(big) }}", {"big": BIG}, "str.format: the result would be longer"),
        (
            "{{ ('{a}' * 1000).format_map({'a': big}) }}",
            {"big": BIG},
            "str.format: the result would be longer",
        ),
        (
            "{{ ('{a!r}' * 200).format(a=big[:10000]) }}",
            {"big": BIG},
            "str.format: the result would be longer",
        ),
        ("{{ ('%(a)1000000s' * 1000)|format(a='x') }}", {}, "'%' formatting: the result would be longer"),
        (
            "{{ ('%(a)s' * 1000)|format(a=big) }}",
            {"big": BIG},
            "'%' formatting: the result would be longer",
        ),
        # Nodes x depth x indent: 2,000 leaves 300 levels deep, indented by 256 (about 150 M characters).
        (
            "{{ deep|tojson(indent=256) }}",
            {"deep": deep_list(300, 2000)},
            "tojson: the result would be longer",
        ),
        ("{{ deep|pprint }}", {"deep": deep_list(300, 20000)}, "the result would be longer"),
        ("{{ ('x' * 500000)|wordwrap(1)|length }}", {}, "wordwrap: wrapping 500,000 characters at width 1"),
        ("{{ v|b64encode }}", {"v": "x" * 2_000_000}, "b64encode: the value is larger than"),
        ("{{ v|urlquote }}", {"v": "\u00e9" * 2_000_000}, "urlquote: the value is larger than"),
        ("{{ v|escape }}", {"v": '"' * 2_000_000}, "escape: the value is larger than"),
        ("{{ v|list|length }}", {"v": "x" * 2_000_000}, "list: the value is larger than"),
        ("{{ v.upper()|length }}", {"v": "\u0390" * 2_000_000}, "str.upper: the text is longer"),
        ("{{ v.split(',')|length }}", {"v": "," * 2_000_000}, "str.split: the text would be split"),
    ],
)
def test_amplifying_payloads_are_refused_before_they_are_built(
    template: str, context: dict[str, Any], fragment: str
) -> None:
    refused({"out": template}, context, fragment)


def test_reasonable_formatting_still_works() -> None:
    context = {"big": "y" * 500_000, "n": 3.25}
    out = render_templates(
        compile_templates(
            {
                "a": "{{ '%s:%05d:%.2f' % ('x', 42, n) }}",
                "b": "{{ '{0}-{1:>6}-{k}'.format('a', 'b', k=big|length) }}",
                "c": "{{ '%(u)s@%(h)s'|format(u='me', h='db') }}",
                "d": "{{ ('%s' * 2) % (big, big) }}",
                "e": "{{ {'a': [1, 2]}|tojson(indent=2) }}",
                "f": "{{ big|wordwrap(76)|length }}",
            }
        ),
        context,
    )
    assert out["a"] == b"x:00042:3.25"
    assert out["b"] == b"a-     b-500000"
    assert out["c"] == b"me@db"
    assert len(out["d"]) == 1_000_000
    assert out["e"] == b'{\n  "a": [\n    1,\n    2\n  ]\n}'
    assert int(out["f"]) > 500_000


def test_forty_wordwraps_share_one_cpu_budget() -> None:
    # Issue 10 finding 3: 40 keys of one uninterruptible filter call each took 161 CPU-s and succeeded,
    # because every key had its own budget and the clock was read only every 16th charge. Each call here is
    # allowed alone (a fraction of the 1 s budget); together they are far over it.
    templates = {f"k{i}": "{{ ('x' * 90000)|wordwrap(1)|length }}" for i in range(40)}
    with pytest.raises(SyncError) as info:
        render_templates(compile_templates(templates), {})
    assert info.value.reason == TEMPLATE_ERROR
    assert "s of CPU time (all templates of this VaultSecret together)" in info.value.message
    assert not info.value.message.startswith("template 'k0':")  # k0 alone fits the budget


def test_loop_steps_are_shared_by_the_templates_of_one_vaultsecret() -> None:
    loop = "{% for i in range(" + str(MAX_STEPS * 6 // 10) + ") %}{% endfor %}ok"
    assert render_templates(compile_templates({"a": loop}), {}) == {"a": b"ok"}
    with pytest.raises(SyncError) as info:
        render_templates(compile_templates({"a": loop, "b": loop}), {})
    assert info.value.message.startswith(f"template 'b': more than {MAX_STEPS:,} loop iterations")


def test_constant_folding_while_compiling_leaves_no_budget_behind() -> None:
    # Jinja runs filters of literals while compiling. Their charges went to a budget that then stayed in the
    # thread's context, with a CPU deadline long past in a long-lived render worker.
    from vaultsync.core import templates as templates_module

    compiled = compile_templates({"a": "{{ 'x'|center(9) }}"})
    assert templates_module._BUDGET.get() is None
    assert render_templates(compiled, {}) == {"a": b"    x    "}
