"""The parser's per-field checks, driven by the :class:`~vaultsync.api.schema.Field` declarations.

:func:`validate` walks a value along its declaration and refuses, with the field's own wording, what
the CRD schema would refuse (type, enum, lengths, bounds, item and property counts, patterns,
deny-lists, required members), and runs the semantic checks the field names. Per value the order is:
type, enum, bounds, the field's checks (they give the precise message), then pattern and deny-lists
(a backstop that the checks usually pre-empt). ``null`` counts as unset; unknown members are ignored.

Semantic checks are looked up by name in the registry the caller passes (the parser's
:data:`vaultsync.core.spec.CHECKS`). A check gets the value and a :class:`Context`, and raises
``ctx.fail(key, default, **extra)``: the field's ``messages[key]`` if it has one, else ``default``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from vaultsync.core.errors import INVALID_SPEC, SyncError

from .schema import Field

__all__ = ["Check", "Context", "re2_search", "show", "type_name", "validate"]

_SHOW_MAX = 80

Check = Callable[[Any, "Context"], None]


def show(value: Any) -> str:
    """A short, printable rendering of a spec value for messages (spec values are not secrets)."""
    text = repr(value)
    if len(text) > _SHOW_MAX:
        text = text[: _SHOW_MAX - 3] + "..."
    return text


def type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


@cache
def _compile_re2(pattern: str) -> re.Pattern[str]:
    """``pattern`` with RE2's meaning in Python: ``$`` outside a class is the end of the text (Python's
    ``$`` also matches before a final newline, which would let ``"a\\n"`` through)."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "$":
            c = r"\Z"
        out.append(c)
        i += 1
    return re.compile("".join(out))


def re2_search(pattern: str, value: str) -> bool:
    """What the API server decides for ``pattern`` on ``value`` (an unanchored search, like RE2's)."""
    return _compile_re2(pattern).search(value) is not None


@dataclass(frozen=True, slots=True)
class Context:
    """Where a value is checked: its field path, its declaration and the object holding it."""

    field: str
    decl: Field
    parent: Mapping[str, Any]
    value: Any

    def fail(self, key: str, default: str, **extra: Any) -> SyncError:
        template = self.decl.messages.get(key, default)
        text = template.format(
            field=self.field,
            value=show(self.value),
            raw=_raw(self.value),
            type=type_name(self.value),
            parent=self.parent,
            **extra,
        )
        return SyncError(INVALID_SPEC, text)


def _is_integral(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _raw(value: Any) -> str:
    """The value as text without quotes, where that is safe to print; else as :func:`show` gives it."""
    if isinstance(value, str) and value.isprintable() and len(value) <= _SHOW_MAX:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return show(value)


_TYPE_OK: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list | tuple),
    # A JSON number with no fraction is an integer to the API server (and comes as 0.0 from some clients).
    "int-or-string": lambda v: isinstance(v, str) or _is_integral(v),
}
_TYPE_MESSAGE = {
    "string": "{field} must be a string, not {type} ({value})",
    "integer": "{field} {value} must be an integer",
    "boolean": "{field} {value} must be true or false",
    "object": "{field} must be an object, not {type}",
    "array": "{field} must be a list, not {type} ({value})",
    "int-or-string": "{field} must be a string or an integer, not {type}",
}
_ENUM = "{field} {value} is not one of {choices}"


def validate(
    decl: Field,
    value: Any,
    where: str,
    checks: Mapping[str, Check],
    parent: Mapping[str, Any] | None = None,
) -> None:
    """Refuse ``value`` (not ``None``: that is unset) if ``decl`` does, with ``SyncError(INVALID_SPEC)``."""
    ctx = Context(field=where, decl=decl, parent=parent or {}, value=value)
    choices = ", ".join(str(c) for c in decl.enum) if decl.enum is not None else ""
    if not _TYPE_OK[decl.type](value):
        if decl.enum is not None and "type" not in decl.messages:
            raise ctx.fail("enum", _ENUM, choices=choices)
        raise ctx.fail("type", _TYPE_MESSAGE[decl.type])
    if decl.enum is not None and value not in decl.enum:
        raise ctx.fail("enum", _ENUM, choices=choices)

    if isinstance(value, str):
        _bounds(ctx, len(value), decl.min_length, decl.max_length, "Length", "characters long")
    elif _is_integral(value):
        if decl.minimum is not None and value < decl.minimum:
            raise ctx.fail("minimum", "{field} is {raw}; the least allowed is {limit}", limit=decl.minimum)
        if decl.maximum is not None and value > decl.maximum:
            raise ctx.fail("maximum", "{field} is {raw}; the most allowed is {limit}", limit=decl.maximum)
    elif isinstance(value, list | tuple):
        _bounds(ctx, len(value), decl.min_items, decl.max_items, "Items", "entries")
    elif isinstance(value, Mapping):
        _bounds(ctx, len(value), None, decl.max_properties, "Properties", "entries")

    for name in decl.checks:
        checks[name](value, ctx)

    if isinstance(value, str):
        if decl.pattern is not None and not re2_search(decl.pattern, value):
            raise ctx.fail(
                "pattern", "{field} {value} does not have the form this field takes (see docs/api.md)"
            )
        if decl.not_pattern is not None and re2_search(decl.not_pattern, value):
            raise ctx.fail("not", "{field} {value} is not allowed here")
    if decl.not_enum is not None and value in decl.not_enum:
        raise ctx.fail("not", "{field} {value} is not allowed here")

    if isinstance(value, Mapping):
        for name, sub in decl.properties.items():
            member = value.get(name)
            if member is None:
                if sub.required:
                    raise Context(f"{where}.{name}", sub, value, None).fail("required", "{field} is missing")
                continue
            validate(sub, member, f"{where}.{name}", checks, value)
        if decl.values is not None:
            for key, member in value.items():
                if not isinstance(key, str):
                    raise ctx.fail("key", "{field} has a key that is not a string ({name})", name=show(key))
                key_ctx = Context(where, decl, value, key)
                for name in decl.key_checks:
                    checks[name](key, key_ctx)
                validate(decl.values, member, f"{where}.{key}", checks, value)
    elif isinstance(value, list | tuple) and decl.items is not None:
        for i, item in enumerate(value):
            validate(decl.items, item, f"{where}[{i}]", checks, {})

    for name in decl.object_checks:
        checks[name](value, ctx)


def _bounds(ctx: Context, n: int, low: int | None, high: int | None, what: str, unit: str) -> None:
    if low is not None and n < low:
        default = (
            "{field} is empty" if low == 1 else f"{{field}} is {{n}} {unit}; at least {{limit}} are needed"
        )
        raise ctx.fail(f"min{what}", default, n=n, limit=low)
    if high is not None and n > high:
        verb = "is" if unit.endswith("long") else "has"
        raise ctx.fail(
            f"max{what}", f"{{field}} {verb} {{n}} {unit}; at most {{limit}} are allowed", n=n, limit=high
        )
