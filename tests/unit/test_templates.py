"""Sandboxed templates: filters, StrictUndefined, sandbox escapes, resource limits, no leaks."""

from __future__ import annotations

import base64
import hashlib
import time
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vaultsync.core import templates as templates_module
from vaultsync.core.errors import TEMPLATE_ERROR, SyncError
from vaultsync.core.templates import CompiledTemplates, compile_templates, render_templates

from .strategies import json_values

SECRET = "s3cr3t-VALUE"

CONTEXT: dict[str, Any] = {
    "username": "app",
    "password": "p@ss/w:rd?&=",
    "host": "db.example.com",
    "dbname": "shop",
    "token": SECRET,
    "port": 5432,
    "enabled": True,
    "config": {"a": 1, "b": [True, None]},
    "b64": base64.b64encode("héllo".encode()).decode(),
    "secret": {
        "username": "app",
        "password": "p@ss/w:rd?&=",
        "token": SECRET,
        "db password": "spaced",
        "config": {"a": 1, "b": [True, None]},
    },
    "metadata": {"version": 7, "created_time": "2024-05-01T10:00:00Z", "sources": {}},
    "namespace": "shop",
    "name": "shop-db",
}


def render(template: str, context: dict[str, Any] | None = None, key: str = "out") -> str:
    compiled = compile_templates({key: template})
    return render_templates(compiled, CONTEXT if context is None else context)[key].decode("utf-8")


def fails(
    template: str, *fragments: str, context: dict[str, Any] | None = None, key: str = "out"
) -> SyncError:
    with pytest.raises(SyncError) as info:
        render(template, context, key)
    err = info.value
    assert err.reason == TEMPLATE_ERROR
    assert err.message.startswith(f"template {key!r}: ")
    for fragment in fragments:
        assert fragment in err.message, (fragment, err.message)
    assert_no_leak(err)
    return err


def assert_no_leak(err: BaseException, *values: str) -> None:
    for value in (SECRET, "s3cr3t", *values):
        assert value not in str(err)
        assert value not in repr(err)
        if isinstance(err, SyncError):
            assert value not in err.message


# --- basics


def test_database_url() -> None:
    out = render("postgresql://{{ username }}:{{ password | urlquote }}@{{ host }}:5432/{{ dbname }}")
    assert out == "postgresql://app:p%40ss%2Fw%3Ard%3F%26%3D@db.example.com:5432/shop"


def test_variables() -> None:
    out = render(
        "{{ secret['db password'] }} {{ secret.username }} v{{ metadata.version }} "
        "{{ metadata.created_time }} {{ namespace }}/{{ name }} {{ port }} {{ enabled }}"
    )
    assert out == "spaced app v7 2024-05-01T10:00:00Z shop/shop-db 5432 True"


def test_multiple_templates_and_bytes() -> None:
    compiled = compile_templates({"a": "{{ username }}", "b": "ü"})
    assert isinstance(compiled, CompiledTemplates)
    assert compiled.keys == ("a", "b")
    assert len(compiled) == 2
    assert render_templates(compiled, CONTEXT) == {"a": b"app", "b": "ü".encode()}


def test_empty() -> None:
    compiled = compile_templates({})
    assert len(compiled) == 0
    assert render_templates(compiled, CONTEXT) == {}


def test_trailing_newline_kept_and_no_autoescape() -> None:
    assert render("<{{ '&' }}>\n") == "<&>\n"


def test_control_structures() -> None:
    out = render(
        "{% macro line(k, v) %}{{ k }}={{ v }}{% endmacro %}"
        "{% for k, v in config|dictsort %}{{ line(k, v) }};{% endfor %}"
        "{% if enabled %}on{% else %}off{% endif %}{% set x = 2 %}{{ x * 3 }}"
        "{{ range(3)|list }}{{ dict(a=1) }}"
    )
    assert out == "a=1;b=[True, None];on6[0, 1, 2]{'a': 1}"


def test_call_block_and_loop_vars() -> None:
    out = render(
        "{% macro wrap() %}[{{ caller() }}]{% endmacro %}{% call wrap() %}x{% endcall %}"
        "{% for i in [1, 2] %}{{ loop.index }}{% endfor %}"
    )
    assert out == "[x]12"


# --- filters


def test_b64encode() -> None:
    assert render("{{ 'héllo'|b64encode }}") == base64.b64encode("héllo".encode()).decode()
    assert render("{{ port|b64encode }}") == base64.b64encode(b"5432").decode()
    assert render("{{ enabled|b64encode|b64decode }}") == "true"
    assert render("{{ config|b64encode|b64decode }}") == '{"a":1,"b":[true,null]}'


def test_b64decode() -> None:
    assert render("{{ b64|b64decode }}") == "héllo"
    assert render("{{ 'aGk'|b64decode }}") == "hi"  # missing padding
    assert render("{{ 'aG\nk='|b64decode }}") == "hi"  # whitespace
    assert render("{{ 'Pz8-'|b64decode }}") == "??>"  # URL-safe alphabet


def test_b64decode_invalid_no_leak() -> None:
    fails("{{ (token ~ '!')|b64decode }}", "b64decode", "not valid base64")
    fails("{{ token|b64decode }}", "b64decode")
    fails("{{ 'é'|b64decode }}", "not valid base64")
    bad_utf8 = base64.b64encode(b"\xff\xfe" + SECRET.encode()).decode()
    fails("{{ v|b64decode }}", "not UTF-8", "decodeBase64Keys", context={"v": bad_utf8})
    fails("{{ port|b64decode }}", "expects text")


def test_tojson() -> None:
    assert render("{{ config|tojson }}") == '{"a":1,"b":[true,null]}'
    assert render("{{ '<&>'|tojson }}") == '"<&>"'  # no HTML escaping
    assert render("{{ {'z': 1, 'a': 'ü'}|tojson }}") == '{"z":1,"a":"ü"}'
    assert render("{{ [1]|tojson(indent=2) }}") == "[\n  1\n]"
    assert render("{{ (1, 2)|tojson }}") == "[1,2]"


def test_tojson_errors() -> None:
    fails("{{ [missing]|tojson }}", "'missing' is undefined")
    fails("{{ missing|tojson }}", "'missing' is undefined")
    fails("{{ config|tojson(indent=1000) }}", "indent")
    fails("{{ range|tojson }}", "tojson", "cannot be written as JSON")


def test_fromjson() -> None:
    assert render("{{ ('{\"a\": [1, 2]}'|fromjson).a[1] }}") == "2"
    assert render("{{ (config|tojson|fromjson).b }}") == "[True, None]"


def test_fromjson_errors_no_leak() -> None:
    fails("{{ token|fromjson }}", "fromjson", "not valid JSON", "line 1 column 1")
    fails("{{ port|fromjson }}", "expects JSON text")
    fails("{{ missing|fromjson }}", "'missing' is undefined")
    fails("{{ v|fromjson }}", "nested too deeply", context={"v": "[" * 100_000})


def test_urlquote() -> None:
    assert render("{{ 'a b/c?d=e&f'|urlquote }}") == "a%20b%2Fc%3Fd%3De%26f"
    assert render("{{ 'ü~._-'|urlquote }}") == "%C3%BC~._-"
    assert render("{{ port|urlquote }}") == "5432"


def test_sha256() -> None:
    assert render("{{ 'abc'|sha256 }}") == hashlib.sha256(b"abc").hexdigest()
    assert render("{{ enabled|sha256 }}") == hashlib.sha256(b"true").hexdigest()


def test_text_filters_reject_unconvertible() -> None:
    fails("{{ range|sha256 }}", "sha256", "cannot be converted to text")
    fails("{{ missing|urlquote }}", "'missing' is undefined")


def test_builtin_filters() -> None:
    assert render("{{ '  x  '|trim }}{{ 'a'|upper }}{{ 'B'|lower }}") == "xAb"
    assert render("{{ 'a\nb'|indent(2, first=True) }}") == "  a\n  b"
    assert render("{{ 'a\nb'|indent('> ') }}") == "a\n> b"
    assert render("{{ missing|default('dflt') }}{{ ''|default('e', true) }}") == "dflte"
    assert render("{{ [3, 1, 2]|sort|join(',') }}") == "1,2,3"
    assert render("{{ [{'n': 'a'}, {'n': 'b'}]|join('+', attribute='n') }}") == "a+b"
    assert render("{{ 'x'|center(5) }}") == "  x  "
    assert render("{{ 'aaa'|replace('a', 'b', 2) }}") == "bba"
    assert render("{{ '%s-%03d'|format('x', 7) }}") == "x-007"
    assert render("{{ '%(a)s'|format(a='k') }}") == "k"
    assert render("{{ 'one two three'|wordwrap(8) }}") == "one two\nthree"
    assert render("{{ [1, 2, 3]|batch(2)|list }}") == "[[1, 2], [3]]"
    assert render("{{ [1, 2, 3]|slice(2)|list }}") == "[[1, 2], [3]]"
    assert render("{{ '%s!' % username }}") == "app!"
    assert render("{{ 'ab' + 'cd' }}{{ 'ab' * 2 }}{{ 2 ** 10 }}{{ 7 % 3 }}") == "abcdabab10241"
    assert render("{{ '{}:{:>3}'.format('a', 'b') }}") == "a:  b"
    assert render(
        "{{ [1, 2, 3]|sum }}{{ [[1], [2]]|sum(start=[]) }}{{ [{'p': 2}, {'p': 3}]|sum(attribute='p') }}"
    ) == ("6[1, 2]5")
    assert render("{{ 2 ** 16000 > 0 }}{{ 10 ** 1000 > 0 }}") == "TrueTrue"
    assert (
        render("{{ 'a,b'.split(',')|join('|') }}{{ '-'.join(['x', 'y']) }}{{ 'aa'.replace('a', 'b') }}")
        == "a|bx-ybb"
    )


def test_format_filter_mixed_args() -> None:
    fails("{{ '%s'|format('a', b=1) }}", "positional or keyword")


def test_random_filter_and_lipsum_removed() -> None:
    fails("{{ [1, 2]|random }}", "syntax error", "random")
    fails("{{ lipsum() }}", "'lipsum' is undefined")
    fails("{{ cycler(1, 2) }}", "'cycler' is undefined")
    fails("{{ joiner() }}", "'joiner' is undefined")
    fails("{{ namespace(a=1) }}", "'namespace' is undefined", context={})


def test_required() -> None:
    assert render("{{ username|required }}") == "app"
    assert render("{{ port|required }}") == "5432"
    fails("{{ missing|required }}", "required value missing", "'missing' is undefined")
    fails("{{ missing|required('set missing in Vault') }}", "set missing in Vault")
    fails("{{ ''|required }}", "a required value is empty")
    fails("{{ none|required }}", "a required value is empty", context={"none": None})
    fails("{{ []|required }}", "a required value is empty")


def test_required_message_from_a_value_is_not_shown() -> None:
    err = fails("{{ ''|required(token) }}", "a required value is empty")
    assert err.message.endswith("(line 1)")


# --- undefined, syntax


def test_strict_undefined() -> None:
    fails("{{ nope }}", "'nope' is undefined", "line 1")
    fails("a\n{{ secret.nope }}", "has no attribute 'nope'", "line 2")
    fails("{{ secret['nope'] }}", "has no attribute 'nope'")
    fails("{{ [1][5] }}", "has no element 5")
    fails("{{ nope.attr }}", "'nope' is undefined")
    fails("{% for x in nope %}{% endfor %}", "'nope' is undefined")
    fails("{{ nope ~ 'x' }}", "'nope' is undefined")
    fails("{{ nope + 1 }}", "'nope' is undefined")


def test_defined_tests_work() -> None:
    assert render("{{ nope is defined }} {{ username is defined }}") == "False True"


def test_syntax_error_names_key_and_line() -> None:
    with pytest.raises(SyncError) as info:
        compile_templates({"ok": "{{ a }}", "DATABASE_URL": "line one\nline two {{ oops( }}\n"})
    err = info.value
    assert err.reason == TEMPLATE_ERROR
    assert err.message.startswith("template 'DATABASE_URL': syntax error at line 2: ")


@pytest.mark.parametrize(
    "template",
    ["{% if %}", "{% for %}", "{{ }}", "{% endif %}", "{% unknowntag %}", "{{ a |}}", "{% for x in y %}"],
)
def test_syntax_errors(template: str) -> None:
    with pytest.raises(SyncError) as info:
        compile_templates({"k": template})
    assert info.value.reason == TEMPLATE_ERROR
    assert info.value.message.startswith("template 'k': syntax error at line 1")


def test_deep_nesting_at_compile() -> None:
    with pytest.raises(SyncError) as info:
        compile_templates({"k": "{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}"})
    assert info.value.reason == TEMPLATE_ERROR
    assert info.value.message.startswith("template 'k': ")


def test_template_source_not_a_string() -> None:
    with pytest.raises(SyncError) as info:
        compile_templates({"k": 5})  # type: ignore[dict-item]
    assert info.value.reason == TEMPLATE_ERROR
    assert "'k'" in info.value.message


def test_first_error_in_key_order() -> None:
    with pytest.raises(SyncError) as info:
        compile_templates({"b": "{% if %}", "a": "{% for %}"})
    assert info.value.message.startswith("template 'a'")


# --- sandbox


ESCAPES = [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''['__class__'] }}",
    "{{ ''|attr('__class__') }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os.environ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__['os'].environ }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__.os.environ }}",
    "{{ range.__self__ }}",
    "{{ range.__globals__ }}",
    "{{ dict.__init__ }}",
    "{{ dict.mro() }}",
    "{{ config.__class__.__init__.__globals__ }}",
    "{{ secret.__class__.__base__.__subclasses__() }}",
    "{{ (secret.items()|list)[0].__class__ }}",
    "{{ username.__len__ }}",
    "{{ '{0.__class__}'.format(username) }}",
    "{{ '{0.__class__.__init__.__globals__}'.format(username) }}",
    "{{ '{0[__class__]}'.format(secret) }}",
    "{{ username.format_map.__self__ }}",
    "{% include '/etc/passwd' %}",
    "{% import '/etc/passwd' as p %}",
    "{% from '/etc/passwd' import x %}",
    "{% extends '/etc/passwd' %}",
    "{{ config }}",
    "{{ request }}",
    "{{ os.environ }}",
    "{{ environ }}",
    "{{ __builtins__ }}",
    "{{ self.__dict__ }}",
    "{{ loop }}",
    "{{ 'x'.translate({}) }}",
    "{{ 'x\ty'.expandtabs(10) }}",
]


@pytest.mark.parametrize("template", ESCAPES)
def test_sandbox_escapes_fail(template: str) -> None:
    context = {k: v for k, v in CONTEXT.items() if k != "config"}
    with pytest.raises(SyncError) as info:
        render(template, context)
    assert info.value.reason == TEMPLATE_ERROR
    assert_no_leak(info.value)


def test_include_is_rejected_at_compile_time() -> None:
    with pytest.raises(SyncError) as info:
        compile_templates({"k": "a\n{% include '/etc/passwd' %}"})
    assert info.value.message == (
        "template 'k': {% include %} is not allowed (line 2): "
        "templates cannot read files or other templates; "
        "write everything in this template (macros are allowed)"
    )


def test_unsafe_attribute_message() -> None:
    fails("{{ ''.__class__ }}", "access to attribute '__class__'", "unsafe")


def test_secret_cannot_be_mutated() -> None:
    context = {**CONTEXT, "secret": {"a": "1"}, "items": [1, 2]}
    fails("{{ secret.update({'a': 1}) }}", "unsafe", context=context)
    fails("{{ secret.pop('a') }}", "unsafe", context=context)
    fails("{{ secret.clear() }}", "unsafe", context=context)
    fails("{{ secret.__setitem__('a', 2) }}", "unsafe", context=context)
    fails("{{ items.append(3) }}", "unsafe", context=context)
    fails("{% set _ = secret.setdefault('b', 1) %}", "unsafe", context=context)
    assert context["secret"] == {"a": "1"}
    assert context["items"] == [1, 2]


def test_os_environ_not_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAULTSYNC_TEST_CANARY", "canary-value-123")
    for template in (
        "{{ self.__init__.__globals__.os.environ }}",
        "{{ range.__globals__['os'].environ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ environ }}",
        "{{ os }}",
    ):
        with pytest.raises(SyncError) as info:
            render(template)
        assert "canary-value-123" not in repr(info.value)


# --- resource limits


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        (
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            "loop iterations",
        ),
        (
            "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}",
            "loop iterations",
        ),
        ("{{ range(10000000)|list }}", "OverflowError"),
        ("{{ 'a' * 100000000 }}", "'*'"),
        ("{{ [1] * 100000000 }}", "'*'"),
        ("{{ 100000000 * 'a' }}", "'*'"),
        ("{{ 2 ** 100000000 }}", "'**'"),
        ("{% set big = 2 ** 16000 %}{% for i in range(100000) %}{% set y = big * big %}{% endfor %}", "bits"),
        ("{{ (range(100000)|batch(1)|list)|sum(start=[])|length }}", "produces more"),
        ("{% set s = 'a' * 1000000 %}{{ [s, s]|sum(start='') }}", "'+'"),
        ("{{ range(10)|map('center', 999999999)|list }}", "center"),
        ("{% set s = 'a' * 1000000 %}{{ s + s }}", "'+'"),
        ("{% set s = 'a' * 1000000 %}{{ s ~ s }}", "'~'"),
        (
            "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% endif %}{% endmacro %}{{ d('a', 40) }}",
            "'~'",
        ),
        (
            "{% macro d(s, n) %}{% if n %}{{ d(s * 2, n - 1) }}{% endif %}{% endmacro %}{{ d('a', 40) }}",
            "'*'",
        ),
        (
            "{% macro d(n, x) %}{% if n %}{{ d(n - 1, x * x) }}{% endif %}{% endmacro %}{{ d(40, 3) }}",
            "bits",
        ),
        ("{{ '%999999999d' % 1 }}", "'%' formatting"),
        ("{{ '%*d' % (999999999, 1) }}", "'*' widths"),
        ("{{ '%999999999d'|format(1) }}", "'%' formatting"),
        ("{{ '{:>999999999}'.format(1) }}", "str.format"),
        ("{{ '{:>{w}}'.format(1, w=999999999) }}", "nested"),
        ("{{ '{:{}}'.format(1, 5) }}", "nested"),
        ("{{ 'a'|center(999999999) }}", "center"),
        ("{{ 'a'.ljust(999999999) }}", "str.ljust"),
        ("{{ 'a'.zfill(999999999) }}", "str.zfill"),
        ("{{ 'a'|indent(100000) }}", "indent"),
        ("{% set s = '\n' * 100000 %}{{ s|indent(200) }}", "indent"),
        ("{% set s = 'a ' * 500000 %}{{ s|wordwrap(1, wrapstring='x' * 100) }}", "wordwrap"),
        ("{{ range(100000)|join('x' * 100000) }}", "join"),
        ("{% set s = 'a' * 1000000 %}{{ [s, s]|join }}", "join"),
        ("{{ ('x' * 100000).join(range(100000)|map('string')) }}", "str.join"),
        ("{% set s = 'a' * 2000 %}{{ s|replace('a', s) }}", "replace"),
        ("{% set s = 'a' * 2000 %}{{ s.replace('a', s) }}", "replace"),
        ("{% set s = 'a' * 2000 %}{{ s|replace('', s) }}", "replace"),
        ("{{ [1]|batch(10000000, 'x')|list }}", "batch"),
        ("{{ [1]|slice(10000000, 'x')|list }}", "slice"),
        ("{% set s = 'a' * 1000000 %}{{ [s, s, s] }}", "larger than"),
        ("{% set s = 'a' * 1000000 %}{{ [s, s, s]|string }}", "than 1,048,576"),
        ("{% for i in range(2000) %}{{ 'a' * 1000 }}{% endfor %}", "output is longer"),
        ("{% for i in range(100) %}{% set s = 'ab' * 500000 %}{{ s|length }}{% endfor %}", "produces more"),
    ],
)
def test_resource_limits(template: str, fragment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each limit on its own: on a slow machine the CPU-time limit would stop the slowest of these first.
    monkeypatch.setattr(templates_module, "MAX_RENDER_SECONDS", 60.0)
    fails(template, fragment)


@pytest.mark.parametrize(
    "template",
    [
        # ~20 s of CPU without the time limit (every other limit holds until then).
        "{% for i in range(99999) %}{% set x = range(200)|map('string')|join %}{% endfor %}",
        # Seconds of list copying and sorting in filters, one loop step at a time.
        "{% for i in range(99999) %}{% set x = range(30)|reverse|sort|sum %}{% endfor %}",
    ],
)
def test_cpu_time_limit(template: str) -> None:
    started = time.thread_time()
    fails(template, f"more than {templates_module.MAX_RENDER_SECONDS:g} s of CPU time")
    assert time.thread_time() - started < templates_module.MAX_RENDER_SECONDS + 1.0


def test_cpu_time_limit_is_shared_by_the_templates_of_one_render(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = SimpleNamespace(now=0.0)

    def thread_time() -> float:  # a fake CPU clock: every reading costs 10 ms
        clock.now += 0.01
        return clock.now

    monkeypatch.setattr(templates_module, "time", SimpleNamespace(thread_time=thread_time))
    # About 0.6 s of the fake clock (each iteration reads it twice: the step and the charge of its output).
    loop = "{% for i in range(30) %}{% endfor %}done"
    assert render_templates(compile_templates({"a": loop}), {}) == {"a": b"done"}
    with pytest.raises(SyncError) as info:
        render_templates(compile_templates({"a": loop, "b": loop}), {})
    assert info.value.reason == TEMPLATE_ERROR
    assert info.value.message.startswith("template 'b': rendering took more than 1 s of CPU time")


def test_reasonable_sizes_work() -> None:
    assert len(render("{{ 'a' * 1000 }}")) == 1000
    assert len(render("{% for i in range(1000) %}{{ i }}{% endfor %}")) == 2890
    assert render("{{ range(5)|join(',') }}") == "0,1,2,3,4"


def test_large_vault_value_can_be_read() -> None:
    big = "x" * 2_000_000
    assert render("{{ v|length }}", {"v": big}) == "2000000"
    fails("{{ v }}", "larger than", context={"v": [big]})


def test_recursion() -> None:
    fails("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursion")


# --- no leaks


LEAKY_TEMPLATES = [
    ("{{ [1, 2].index(token) }}", "ValueError"),
    ("{{ secret[token] }}", "computed while rendering"),
    ("{{ secret[token ~ 'x'] }}", "computed while rendering"),
    ("{{ secret[token|upper] }}", "computed while rendering"),
    ("{{ config[token] }}", "computed while rendering"),
    ("{{ username|attr(token) }}", "computed while rendering"),
    ("{{ token|int + token }}", "TypeError"),
    ("{{ token + 1 }}", "TypeError"),
    ("{{ token / 2 }}", "TypeError"),
    ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ("{{ '%d' % token }}", "TypeError"),
    ("{{ token|fromjson }}", "not valid JSON"),
    ("{{ token|b64decode }}", "b64decode"),
    ("{{ (token ~ '!')|b64decode }}", "not valid base64"),
    ("{{ (token ~ '\"')|fromjson }}", "not valid JSON"),
    ("{{ {}[token] }}", "computed while rendering"),
    ("{{ range(token) }}", "TypeError"),
    ("{{ token.nope }}", "has no attribute 'nope'"),
    ("{{ ('{0[' ~ token ~ ']}').format({}) }}", "computed while rendering"),
    ("{{ ('{' ~ token ~ '}').format() }}", "KeyError"),
    ("{{ ''|required(token) }}", "required value is empty"),
    ("{% macro m(a) %}{% endmacro %}{{ m(**{token: 1}) }}", "TypeError"),
    ("{{ token|dictsort }}", ""),
    ("{{ dict(**{token: 1}).nope }}", "nope"),
    ("{{ token|center('x') }}", "center"),
    ("{{ token.encode('utf-32').decode('ascii') }}", "ValueError"),
    ("{{ token.startswith(1) }}", "TypeError"),
    ("{{ token|tojson(indent=token) }}", "indent"),
]


@pytest.mark.parametrize(("template", "fragment"), LEAKY_TEMPLATES)
def test_errors_never_contain_values(template: str, fragment: str) -> None:
    with pytest.raises(SyncError) as info:
        render(template)
    err = info.value
    assert err.reason == TEMPLATE_ERROR
    assert fragment in err.message
    assert_no_leak(err)
    assert err.__cause__ is None and err.__suppress_context__


def test_mask_as_last_safeguard() -> None:
    # A value that happens to equal a literal in the template is shown as the literal it is...
    err = fails("{{ secret[v] }}", context={**CONTEXT, "v": "nope", "secret": {}})
    assert "(a name computed while rendering)" in err.message
    # ...and if a Vault value appears in any message, it is masked.
    err = fails("{{ secret['sensitive-literal'] }}", context={**CONTEXT, "x": "sensitive-literal"})
    assert "sensitive-literal" not in err.message
    assert "***" in err.message


def test_computed_names_shown_when_written_in_template() -> None:
    fails("{% set k = 'abc' %}{{ secret[k] }}", "has no attribute 'abc'")


# --- properties

_fragments = st.sampled_from(
    [
        "{{ ",
        " }}",
        "{% ",
        " %}",
        "{% for x in secret %}",
        "{% endfor %}",
        "{% if ",
        "{% endif %}",
        "{% else %}",
        "secret",
        "secret[",
        "]",
        "x",
        "a",
        "metadata.version",
        "namespace",
        "name",
        "|",
        "b64encode",
        "b64decode",
        "tojson",
        "fromjson",
        "urlquote",
        "sha256",
        "required",
        "trim",
        "int",
        "upper",
        "default('d')",
        "indent(2)",
        "(",
        ")",
        "'s'",
        "1",
        "~",
        "+",
        "*",
        "%",
        ".",
        ",",
        "[",
        "__class__",
        "{# c #}",
        "\n",
    ]
)
template_strings = st.lists(_fragments | st.text(max_size=5), max_size=15).map("".join)
vault_contexts = st.dictionaries(st.text(max_size=8), json_values, max_size=5)


@settings(max_examples=300, deadline=None)
@given(template_strings, vault_contexts)
def test_arbitrary_templates_only_raise_sync_error(template: str, data: dict[str, Any]) -> None:
    context: dict[str, Any] = {
        k: v for k, v in data.items() if k not in {"secret", "metadata", "namespace", "name"}
    }
    context.update(secret=data, metadata={"version": 1, "created_time": None}, namespace="ns", name="n")
    try:
        compiled = compile_templates({"k": template})
        result = render_templates(compiled, context)
    except SyncError as err:
        assert err.reason == TEMPLATE_ERROR
        assert err.message.startswith("template 'k': ")
        return
    assert isinstance(result["k"], bytes)


@settings(max_examples=100, deadline=None)
@given(vault_contexts)
def test_rendering_every_value_only_raises_sync_error(data: dict[str, Any]) -> None:
    templates = {
        "all": "{% for k, v in secret.items() %}{{ k }}={{ v }};{% endfor %}",
        "json": "{{ secret|tojson }}",
        "b64": "{% for v in secret.values() %}{{ v|b64encode }}{% endfor %}",
        "quote": "{% for v in secret.values() %}{{ v|urlquote }}{{ v|sha256 }}{% endfor %}",
    }
    result = render_templates(compile_templates(templates), {"secret": data})
    assert set(result) == set(templates)
