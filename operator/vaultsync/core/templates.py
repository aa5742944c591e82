"""Sandboxed Jinja2 templates for ``spec.templates``.

Templates are written by whoever may create VaultSecrets in a namespace and run inside the
operator, next to every other namespace's secrets. So:

* The environment is Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`: no access
  to ``_``-prefixed attributes or Python internals, no mutation of lists/dicts (so
  ``secret.update(...)`` fails), only safe callables.
* There is no loader: ``{% include %}``, ``{% import %}``, ``{% from %}`` and ``{% extends %}`` are
  rejected when the template is compiled. Templates cannot read files or other templates.
* Only the globals ``range`` (at most 100,000 items) and ``dict`` exist; ``lipsum``, ``cycler``,
  ``joiner`` and ``namespace`` are removed, as is the ``random`` filter (a template must render the
  same output for the same input, or every refresh would rewrite the Secret and restart pods).
* ``StrictUndefined``: using a variable or key that does not exist is an error, never an empty string.
* Resource limits, so that one VaultSecret cannot stall the operator: at most :data:`MAX_STEPS`
  loop iterations and macro calls, at most :data:`MAX_WORK` characters of text produced and at most
  :data:`MAX_RENDER_SECONDS` of CPU time, each for all templates of one VaultSecret together (one
  budget, its clock read at every charge); no single string or list larger than
  :data:`MAX_VALUE_SIZE` created by an operator or filter, and sizes are estimated *before* a value is
  built (``%``/``str.format``/``format`` add up literal text, widths and arguments; ``tojson(indent=)``
  stops while encoding; amplifying filters take at most :data:`MAX_VALUE_SIZE` of input; ``wordwrap``'s
  quadratic cost is capped); an output of at most :data:`MAX_VALUE_SIZE`. The operator also renders in
  worker processes with memory, CPU and wall-clock limits (``vaultsync.engine.renderpool``) as the
  backstop for whatever these checks miss.
* Error messages never contain a value. Every failure becomes
  ``SyncError(TEMPLATE_ERROR, "template 'KEY': ...")`` built only from the template's own text,
  exception type names and fixed descriptions; as a last safeguard any Vault value that still
  appears in a message is masked.

Filters added to Jinja's built-ins (text filters accept any value and convert non-strings the way
the Secret does: ``42``, ``true``, compact JSON):

``b64encode``   text or bytes -> base64 text
``b64decode``   base64 -> text (UTF-8); whitespace and missing padding are tolerated
``tojson``      compact JSON, no HTML escaping, keys in their original order; ``tojson(indent=2)``
``fromjson``    JSON text -> value
``urlquote``    percent-encode all but letters, digits and ``_.-~`` (``urllib.parse.quote(v, safe="")``)
``sha256``      hex SHA-256 of the text
``required``    fails with a message if the value is undefined, ``None`` or empty; ``required("msg")``
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import json
import re
import string
import time
import types
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import update_wrapper
from pprint import pformat
from typing import Any, NoReturn

from jinja2 import Template, nodes, pass_environment
from jinja2.exceptions import SecurityError, TemplateRuntimeError, TemplateSyntaxError, UndefinedError
from jinja2.filters import do_batch, do_indent, do_wordwrap, make_attrgetter, sync_do_slice
from jinja2.runtime import Context, StrictUndefined, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing, object_type_repr
from jinja2.visitor import NodeTransformer

from .convert import value_to_text
from .errors import TEMPLATE_ERROR, SyncError

__all__ = [
    "MAX_RENDER_SECONDS",
    "MAX_STEPS",
    "MAX_VALUE_SIZE",
    "MAX_WORK",
    "CompiledTemplates",
    "compile_templates",
    "render_templates",
]

MAX_STEPS = 100_000
"""Loop iterations plus macro calls allowed while rendering all templates of one VaultSecret."""
MAX_VALUE_SIZE = 1024 * 1024
"""Largest string or list (in characters / items) a template may create, and largest output."""
MAX_INPUT_SIZE = 16 * 1024 * 1024
"""Largest value (estimated size) a filter or method may read; Vault values can exceed the output limit."""
MAX_WORK = 64 * 1024 * 1024
"""Total characters the templates of one VaultSecret may produce while rendering, intermediate strings
included."""
MAX_INDENT = 256
"""Largest ``tojson(indent=...)`` and ``indent(width)``."""
MAX_RENDER_SECONDS = 1.0
"""CPU time (of the rendering thread) that all templates of one VaultSecret may take together. The other
limits bound memory; this one bounds time, which they alone do not (a loop of 100,000 cheap-looking filter
chains can otherwise take many seconds). Ordinary templates take milliseconds."""
MAX_BATCH = 100_000
"""Largest ``batch``/``slice`` count."""
MAX_INT_BITS = 16_384
"""Largest integer ``*`` and ``**`` may build (Python refuses to print more than 4,300 digits anyway)."""
MAX_WRAP_LINES = 200_000
"""Largest number of lines ``wordwrap`` may make (its cost is per line: about 1 µs each)."""
MAX_WRAP_COPIES = 10_000_000_000
"""Largest ``len(text)**2 / (2 * width)`` for ``wordwrap``: textwrap cuts a long word by copying the rest of
it at every line, so one call is quadratic (``('x' * 500000)|wordwrap(1)`` took 4 s of CPU)."""

_FILENAME = "<template>"
_UNSAFE_STR_METHODS = frozenset({"translate", "maketrans", "expandtabs"})
_WIDTH_STR_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})
_CASE_STR_METHODS = frozenset({"upper", "lower", "casefold", "swapcase", "title", "capitalize"})
"""Methods whose result can be longer than the text (``'ß'.upper() == 'SS'``, up to 3 characters per one)."""
_SPLIT_STR_METHODS = frozenset({"split", "rsplit", "splitlines"})
_AMPLIFYING_FILTERS = frozenset(
    {
        "b64encode",
        "urlquote",
        "urlencode",
        "escape",
        "e",
        "forceescape",
        "tojson",
        "pprint",
        "urlize",
        "xmlattr",
        "wordwrap",
        "indent",
        "center",
        "upper",
        "lower",
        "title",
        "capitalize",
        "list",
        "batch",
        "slice",
        "string",
        "format",
        "sort",
        "unique",
        "dictsort",
        "groupby",
        "items",
    }
)
"""Filters whose result can be larger than their input (escaping, encoding, padding, one list item per
character, ...): their input is limited to :data:`MAX_VALUE_SIZE`, so their output is at most a small
multiple of it, checked again afterwards. (A result larger than the limit could not be used anyway.)"""
_PERCENT_SPEC = re.compile(r"%(?:\(([^)]*)\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])?")
_FORMAT_NUMBERS = re.compile(r"\d+")
_RESERVED_NAMES = frozenset({"secret", "metadata", "namespace", "name", "range", "dict"})
_MASK = "***"
_MIN_MASK_LEN = 4


# --------------------------------------------------------------------------------------------- problems


class _Problem(Exception):
    """A failure whose message is known to be safe to show (built from fixed text and template text)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.safe_message = message


class _SafeUndefinedError(UndefinedError):
    """An UndefinedError whose message was built by :class:`_SafeUndefined`."""


class _SafeSecurityError(SecurityError):
    """A SecurityError whose message was built by :class:`_SafeUndefined`."""


# --------------------------------------------------------------------------------------------- render state


def _cpu_deadline() -> float:
    return time.thread_time() + MAX_RENDER_SECONDS


@dataclass
class _Budget:
    steps: int = 0
    work: int = 0
    charges: int = 0
    deadline: float = field(default_factory=_cpu_deadline)
    """``time.thread_time()`` after which rendering stops (shared by the templates of one render)."""

    def _check_time(self) -> None:
        if time.thread_time() > self.deadline:
            raise _Problem(
                f"rendering took more than {MAX_RENDER_SECONDS:g} s of CPU time "
                "(all templates of this VaultSecret together); simplify the template"
            )

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise _Problem(f"more than {MAX_STEPS:,} loop iterations and macro calls; simplify the template")
        self._check_time()

    def charge(self, size: int) -> None:
        self.work += size
        if self.work > MAX_WORK:
            raise _Problem(
                f"the template produces more than {MAX_WORK:,} characters while rendering; simplify it"
            )
        self.charges += 1
        # Every charge reads the clock (~0.1 µs): with a check only every N charges, templates that each
        # make fewer than N expensive calls were never stopped.
        self._check_time()


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "vaultsync_template_budget", default=None
)
_LITERALS: contextvars.ContextVar[frozenset[Any]] = contextvars.ContextVar(
    "vaultsync_template_literals", default=frozenset()
)


def _budget() -> _Budget:
    budget = _BUDGET.get()
    if budget is None:  # rendering outside render_templates: still bounded, per call site
        budget = _Budget()
        _BUDGET.set(budget)
    return budget


def _estimate(value: Any, limit: int) -> int:
    """Roughly how many characters ``str(value)`` would have; raises _Problem once above ``limit``.

    Walks containers iteratively with an early exit, so a huge (or deeply shared) structure costs at
    most ``limit`` steps.
    """
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes | bytearray):
            total += len(item) + 2
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            stack.extend(item)
        else:
            total += 8
        if total > limit:
            raise _Problem(
                f"a value is larger than {limit:,} characters; the template cannot use it this way"
            )
    return total


def _check_result(value: Any) -> Any:
    """Size-check and charge a value returned by an operator, filter or method.

    Operations that can amplify (``*``, ``+``, ``~``, ``join``, ``replace``, widths, ...) are
    checked against :data:`MAX_VALUE_SIZE` before they run; this catch-all uses the input limit so
    that merely reading a large Vault value still works.
    """
    if isinstance(value, str | bytes | list | tuple | dict):
        _budget().charge(_estimate(value, MAX_INPUT_SIZE))
    return value


def _tick() -> str:
    _budget().step()
    return ""


def _concat(*parts: Any) -> str:
    """Replacement for ``a ~ b``: the same result, with the size limit."""
    texts: list[str] = []
    total = 0
    for part in parts:
        if not isinstance(part, str):
            _estimate(part, MAX_VALUE_SIZE)
        text = str(part)
        total += len(text)
        if total > MAX_VALUE_SIZE:
            raise _Problem(f"'~' would build a string longer than {MAX_VALUE_SIZE:,} characters")
        texts.append(text)
    _budget().charge(total)
    return "".join(texts)


def _finalize(value: Any) -> Any:
    """Called on every ``{{ ... }}`` value before it is written: refuse values too large to print."""
    if not isinstance(value, str):
        _estimate(value, MAX_VALUE_SIZE)
    return value


# --------------------------------------------------------------------------------------------- undefined


def _shown(name: Any) -> str:
    """Show a looked-up name only if it is written in the template (it may be computed from a value)."""
    literals = _LITERALS.get()
    try:
        known = name in literals
    except TypeError:
        known = False
    if known and isinstance(name, str | int) and not isinstance(name, bool):
        return repr(name)
    return "(a name computed while rendering)"


class _SafeUndefined(StrictUndefined):
    """StrictUndefined whose error messages never echo a name computed from a value."""

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: type[TemplateRuntimeError] = UndefinedError,
    ) -> None:
        safe_exc: type[TemplateRuntimeError] = (
            _SafeSecurityError if issubclass(exc, SecurityError) else _SafeUndefinedError
        )
        super().__init__(hint=hint, obj=obj, name=name, exc=safe_exc)

    @property
    def _undefined_message(self) -> str:
        name = self._undefined_name
        obj = self._undefined_obj
        if isinstance(obj, Undefined):
            # Looking something up on an undefined value: the real problem is the first undefined.
            message: str = obj._undefined_message
            return message
        if issubclass(self._undefined_exception, SecurityError):
            owner = "an object" if obj is missing else f"a {type(obj).__name__!r} object"
            return f"access to attribute {_shown(name)} of {owner} is unsafe (blocked by the sandbox)"
        if obj is missing:
            if name is None:
                return "an undefined value was used"
            return f"{_shown(name)} is undefined"
        if isinstance(name, str):
            return f"{object_type_repr(obj)!r} has no attribute {_shown(name)}"
        return f"{object_type_repr(obj)} has no element {_shown(name)}"


# --------------------------------------------------------------------------------------------- filters


def _fail_undefined(value: Undefined) -> NoReturn:
    value._fail_with_undefined_error()
    raise AssertionError("unreachable")  # pragma: no cover


def _as_bytes(value: Any, filter_name: str) -> bytes:
    if isinstance(value, Undefined):
        _fail_undefined(value)
    if isinstance(value, bytes):
        return value
    _estimate(value, MAX_INPUT_SIZE)
    try:
        return value_to_text(value).encode("utf-8")
    except (TypeError, ValueError, UnicodeError):
        raise _Problem(
            f"{filter_name}: a value of type {type(value).__name__} cannot be converted to text"
        ) from None


def _as_text(value: Any, filter_name: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _Problem(f"{filter_name}: the bytes are not UTF-8 text") from None
    return _as_bytes(value, filter_name).decode("utf-8")


def _b64encode(value: Any) -> str:
    return base64.b64encode(_as_bytes(value, "b64encode")).decode("ascii")


def _b64decode_bytes(text: str | bytes, what: str) -> bytes:
    """Strict base64 (standard alphabet, or URL-safe); ASCII whitespace ignored, missing padding added."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise _Problem(f"{what} is not valid base64") from None
    compact = "".join(text.split())
    if not compact.isascii():
        raise _Problem(f"{what} is not valid base64")
    compact += "=" * (-len(compact) % 4)
    if "-" in compact or "_" in compact:
        compact = compact.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise _Problem(f"{what} is not valid base64") from None


def _b64decode(value: Any) -> str:
    if isinstance(value, Undefined):
        _fail_undefined(value)
    if not isinstance(value, str | bytes):
        raise _Problem(f"b64decode: expects text, not {type(value).__name__}")
    raw = _b64decode_bytes(value, "b64decode: the value")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Problem(
            "b64decode: the decoded bytes are not UTF-8 text; for binary values use spec.decodeBase64Keys"
        ) from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Undefined):
        _fail_undefined(obj)
    if isinstance(obj, tuple | set | frozenset):
        return list(obj)
    raise _Problem(f"tojson: a value of type {type(obj).__name__} cannot be written as JSON")


def _tojson(value: Any, indent: int | None = None) -> str:
    if isinstance(value, Undefined):
        _fail_undefined(value)
    if indent is not None and (
        isinstance(indent, bool) or not isinstance(indent, int) or not 0 <= indent <= MAX_INDENT
    ):
        raise _Problem(f"tojson: indent must be an integer from 0 to {MAX_INDENT}")
    size = _estimate(value, MAX_VALUE_SIZE)
    separators = (",", ":") if indent is None else (",", ": ")
    try:
        if indent is None and size * 6 <= MAX_VALUE_SIZE:
            # Compact JSON is at most 6 characters per input character (\u0000): cannot exceed the limit.
            return json.dumps(value, ensure_ascii=False, separators=separators, default=_json_default)
        # Indented JSON grows with nodes x depth x indent (a deep list of 100,000 items makes gigabytes):
        # encode piece by piece and stop at the limit, before the text is built.
        encoder = json.JSONEncoder(
            ensure_ascii=False, separators=separators, indent=indent, default=_json_default
        )
        chunks: list[str] = []
        total = 0
        budget = _budget()
        for count, chunk in enumerate(encoder.iterencode(value)):
            total += len(chunk)
            if total > MAX_VALUE_SIZE:
                raise _Problem(f"tojson: the result would be longer than {MAX_VALUE_SIZE:,} characters")
            if not count % 4096:
                budget.charge(0)  # checks the CPU time
            chunks.append(chunk)
        return "".join(chunks)
    except RecursionError:
        raise _Problem("tojson: the value is nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise _Problem(f"tojson: the value cannot be written as JSON ({type(exc).__name__})") from None


def _depth_weighted(value: Any, limit: int) -> int:
    """Like :func:`_estimate`, each item counted with its nesting depth (pretty-printers indent each line by
    it); raises _Problem once above ``limit``."""
    total = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        total += depth + 1
        if isinstance(item, str | bytes | bytearray):
            total += len(item) + 2
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            stack.extend((k, depth + 1) for k in item)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2 + 2 * len(item)
            stack.extend((v, depth + 1) for v in item)
        else:
            total += 8
        if total > limit:
            raise _Problem(f"the result would be longer than {limit:,} characters")
    return total


def _pprint(value: Any) -> str:
    if isinstance(value, Undefined):
        _fail_undefined(value)
    _depth_weighted(value, MAX_VALUE_SIZE)
    return pformat(value)


def _fromjson(value: Any) -> Any:
    if isinstance(value, Undefined):
        _fail_undefined(value)
    if not isinstance(value, str | bytes):
        raise _Problem(f"fromjson: expects JSON text, not {type(value).__name__}")
    _estimate(value, MAX_INPUT_SIZE)
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        # exc.msg is a fixed description ("Expecting value"); never the document.
        raise _Problem(
            f"fromjson: the value is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    except RecursionError:
        raise _Problem("fromjson: the value is nested too deeply") from None
    except (TypeError, ValueError, UnicodeError):
        raise _Problem("fromjson: the value is not valid JSON") from None


def _urlquote(value: Any) -> str:
    return urllib.parse.quote(_as_bytes(value, "urlquote"), safe="")


def _sha256(value: Any) -> str:
    return hashlib.sha256(_as_bytes(value, "sha256")).hexdigest()


def _required(value: Any, message: Any = None) -> Any:
    custom = ""
    if message is not None:
        custom = f": {message}" if isinstance(message, str) and message in _LITERALS.get() else ""
    if isinstance(value, Undefined):
        try:
            _fail_undefined(value)
        except (_SafeUndefinedError, _SafeSecurityError) as exc:
            raise _Problem(f"required value missing ({exc.message}){custom}") from None
    if value is None or (isinstance(value, str | bytes | list | tuple | dict) and len(value) == 0):
        raise _Problem(f"a required value is empty{custom}")
    return value


def _center(value: Any, width: int = 80) -> str:
    if not isinstance(width, int) or width > MAX_VALUE_SIZE:
        raise _Problem(f"center: width must be an integer of at most {MAX_VALUE_SIZE:,}")
    return _as_text(value, "center").center(width)


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = _as_text(s, "indent")
    if isinstance(width, str) and len(width) <= MAX_INDENT:
        pad = width
    elif isinstance(width, int) and not isinstance(width, bool) and 0 <= width <= MAX_INDENT:
        pad = " " * width
    else:
        raise _Problem(f"indent: width must be a string or an integer from 0 to {MAX_INDENT}")
    if (text.count("\n") + 1) * len(pad) + len(text) > MAX_VALUE_SIZE:
        raise _Problem(f"indent: the result would be longer than {MAX_VALUE_SIZE:,} characters")
    return do_indent(text, pad, first, blank)


@pass_environment
def _wordwrap(
    environment: Any,
    s: Any,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    text = _as_text(s, "wordwrap")
    sep = environment.newline_sequence if wrapstring is None else _as_text(wrapstring, "wordwrap")
    if (len(text) + 1) * max(len(sep), 1) + len(text) > MAX_VALUE_SIZE:
        raise _Problem(f"wordwrap: the result could be longer than {MAX_VALUE_SIZE:,} characters")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise _Problem("wordwrap: width must be an integer of at least 1")
    lines = 2 * len(text) // width + text.count("\n") + 1
    if lines > MAX_WRAP_LINES or len(text) * len(text) // (2 * width) > MAX_WRAP_COPIES:
        raise _Problem(
            f"wordwrap: wrapping {len(text):,} characters at width {width} is too costly "
            f"(at most {MAX_WRAP_LINES:,} lines); use a larger width or wrap less text"
        )
    return do_wordwrap(environment, text, width, break_long_words, sep, break_on_hyphens)


@pass_environment
def _join(environment: Any, value: Iterable[Any], d: str = "", attribute: str | int | None = None) -> str:
    sep = _as_text(d, "join")
    items: Iterable[Any] = value
    if attribute is not None:
        items = map(make_attrgetter(environment, attribute), items)
    parts: list[str] = []
    total = 0
    for i, item in enumerate(items):
        if isinstance(item, Undefined):
            _fail_undefined(item)
        if not isinstance(item, str):
            _estimate(item, MAX_VALUE_SIZE)
        text = str(item)
        total += len(text) + (len(sep) if i else 0)
        if total > MAX_VALUE_SIZE:
            raise _Problem(f"join: the result would be longer than {MAX_VALUE_SIZE:,} characters")
        parts.append(text)
    return sep.join(parts)


def _check_replace(text: str, old: str, new: str, count: int | None) -> None:
    occurrences = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    if len(text) + occurrences * (len(new) - len(old)) > MAX_VALUE_SIZE:
        raise _Problem(f"replace: the result would be longer than {MAX_VALUE_SIZE:,} characters")


def _replace(s: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old_t, new_t = _as_text(s, "replace"), _as_text(old, "replace"), _as_text(new, "replace")
    if count is not None and not isinstance(count, int):
        raise _Problem("replace: count must be an integer")
    _check_replace(text, old_t, new_t, count)
    return text.replace(old_t, new_t, -1 if count is None else count)


def _text_size(value: Any) -> int:
    """An upper estimate of ``len(str(value))`` (for formatting), refusing values above the output limit."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 2
    if isinstance(value, float):
        return 330  # '%f' % 1e308 has 309 digits
    if isinstance(value, bytes | bytearray):
        return 4 * len(value) + 3  # str() of bytes is their repr: b'\x00...'
    return _estimate(value, MAX_VALUE_SIZE)


def _check_output_estimate(what: str, total: int) -> None:
    if total > MAX_VALUE_SIZE:
        raise _Problem(f"{what}: the result would be longer than {MAX_VALUE_SIZE:,} characters")


def _check_percent_format(fmt: str, args: Any) -> None:
    """Refuse ``fmt % args`` whose result could exceed :data:`MAX_VALUE_SIZE`, before it is built.

    The estimate adds the literal text, every width and precision and every argument as often as the
    format uses it (``'%(a)s' * 1000`` uses ``a`` 1,000 times), ``%r``/``%a`` at 10 characters per one.
    """
    total = len(fmt)
    position = 0
    for m in _PERCENT_SPEC.finditer(fmt):
        name, width, precision, conversion = m.group(1), m.group(2), m.group(3), m.group(4)
        for num in (width, precision):
            if num is None:
                continue
            if num == "*":
                raise _Problem("'%' formatting with '*' widths is not allowed")
            if len(num) > 7 or int(num) > MAX_VALUE_SIZE:
                raise _Problem(f"'%' formatting widths must be at most {MAX_VALUE_SIZE:,}")
            total += int(num)
        if conversion == "%" or conversion is None:
            continue
        arg: Any
        if name is not None and isinstance(args, Mapping):
            arg = args.get(name, args)
        elif isinstance(args, tuple):
            arg = args[position] if position < len(args) else None
            position += 1
        else:
            arg = args
        size = _text_size(arg)
        total += 10 * size if conversion in ("r", "a") else size
        _check_output_estimate("'%' formatting", total)
    _estimate(args, MAX_VALUE_SIZE)
    _check_output_estimate("'%' formatting", total)


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    if args and kwargs:
        raise _Problem("format: use positional or keyword arguments, not both")
    fmt = _as_text(value, "format")
    params: Any = kwargs or args
    _check_percent_format(fmt, params)
    result: str = fmt % params
    return result


def _check_str_format(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse ``fmt.format(*args, **kwargs)`` whose result could exceed :data:`MAX_VALUE_SIZE`, beforehand.

    Like :func:`_check_percent_format`: literal text, widths and precisions, and each argument as often as a
    field names it (``{0.attr}`` and ``{0[key]}`` count the whole argument).
    """
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        raise _Problem("str.format: the format string is malformed") from None
    total = 0
    auto = 0
    sizes: dict[int | str, int] = {}
    for literal, field_name, spec, conversion in parsed:
        total += len(literal)
        if spec and "{" in spec:
            raise _Problem("str.format: nested replacement fields in a format spec are not allowed")
        for num in _FORMAT_NUMBERS.findall(spec or ""):
            if len(num) > 7 or int(num) > MAX_VALUE_SIZE:
                raise _Problem(f"str.format: widths and precisions must be at most {MAX_VALUE_SIZE:,}")
            total += int(num)
        if field_name is None:
            continue
        base = re.split(r"[.\[]", field_name, maxsplit=1)[0]
        ref: int | str
        if base == "":
            ref, auto = auto, auto + 1
        elif base.isdigit():
            ref = int(base)
        else:
            ref = base
        if ref not in sizes:
            if isinstance(ref, int):
                sizes[ref] = _text_size(args[ref]) if ref < len(args) else 0
            else:
                sizes[ref] = _text_size(kwargs[ref]) if ref in kwargs else 0
        total += 10 * sizes[ref] if conversion in ("r", "a") else sizes[ref]
        _check_output_estimate("str.format", total)
    _estimate((args, dict(kwargs)), MAX_VALUE_SIZE)


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
    if not isinstance(linecount, int) or not 0 < linecount <= MAX_BATCH:
        raise _Problem(f"batch: the count must be an integer from 1 to {MAX_BATCH:,}")
    return do_batch(value, linecount, fill_with)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
    if not isinstance(slices, int) or not 0 < slices <= MAX_BATCH:
        raise _Problem(f"slice: the count must be an integer from 1 to {MAX_BATCH:,}")
    return sync_do_slice(value, slices, fill_with)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``+``, ``*``, ``**`` and ``%`` that would build an oversized value."""
    sized = (str, bytes, list, tuple)
    both_ints = isinstance(left, int) and isinstance(right, int)
    if operator == "+" and isinstance(left, sized) and isinstance(right, sized):
        if len(left) + len(right) > MAX_VALUE_SIZE:
            raise _Problem(f"'+' would build a value longer than {MAX_VALUE_SIZE:,}")
    elif operator == "*":
        seq, count = (left, right) if isinstance(left, sized) else (right, left)
        if isinstance(seq, sized) and isinstance(count, int) and len(seq) * count > MAX_VALUE_SIZE:
            raise _Problem(f"'*' would build a value longer than {MAX_VALUE_SIZE:,}")
        if both_ints and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise _Problem(f"'*' would build a number larger than {MAX_INT_BITS:,} bits")
    elif operator == "**":
        if both_ints and abs(left) > 1 and right > 0 and (left.bit_length() - 1) * right > MAX_INT_BITS:
            raise _Problem(f"'**' would build a number larger than {MAX_INT_BITS:,} bits")
    elif operator == "%" and isinstance(left, str):
        _check_percent_format(left, right)


@pass_environment
def _sum(
    environment: Any, iterable: Iterable[Any], attribute: str | int | None = None, start: Any = 0
) -> Any:
    """Jinja's ``sum``, adding step by step through the size checks of ``+``."""
    items: Iterable[Any] = iterable
    if attribute is not None:
        items = map(make_attrgetter(environment, attribute), items)
    total = start
    for item in items:
        _check_binop("+", total, item)
        total = _check_result(total + item)
    return total


def _guarded(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    """Wrap a filter: refuse oversized inputs, size-check and charge its result.

    ``update_wrapper`` copies ``jinja_pass_arg``, so Jinja still passes the environment/context
    first to filters that ask for it; that first argument is not checked. The input of an amplifying
    filter (:data:`_AMPLIFYING_FILTERS`) is limited to :data:`MAX_VALUE_SIZE`.
    """
    passes_arg = hasattr(func, "jinja_pass_arg")
    amplifies = name in _AMPLIFYING_FILTERS

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        checked = args[1:] if passes_arg else args
        if amplifies and checked and not isinstance(checked[0], Undefined):
            try:
                _estimate(checked[0], MAX_VALUE_SIZE)
            except _Problem:
                raise _Problem(
                    f"{name}: the value is larger than {MAX_VALUE_SIZE:,} characters; "
                    "its result could not fit in a Secret value"
                ) from None
        for arg in (*checked, *kwargs.values()):
            if isinstance(arg, str | bytes):
                if len(arg) > MAX_INPUT_SIZE:
                    _estimate(arg, MAX_INPUT_SIZE)
            elif not isinstance(arg, Undefined):
                _estimate(arg, MAX_INPUT_SIZE)
        return _check_result(func(*args, **kwargs))

    return update_wrapper(wrapper, func)


_CUSTOM_FILTERS: dict[str, Callable[..., Any]] = {
    "b64encode": _b64encode,
    "b64decode": _b64decode,
    "tojson": _tojson,
    "fromjson": _fromjson,
    "urlquote": _urlquote,
    "sha256": _sha256,
    "required": _required,
    "center": _center,
    "indent": _indent,
    "wordwrap": _wordwrap,
    "join": _join,
    "replace": _replace,
    "format": _format,
    "batch": _batch,
    "slice": _slice,
    "sum": _sum,
    "pprint": _pprint,
}
_REMOVED_FILTERS = frozenset({"random"})
_REMOVED_GLOBALS = frozenset({"lipsum", "cycler", "joiner", "namespace"})


# --------------------------------------------------------------------------------------------- environment


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox with size guards on operators, method calls and str.format."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    vaultsync_tick = staticmethod(_tick)
    vaultsync_concat = staticmethod(_concat)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str | bytes) and attr in _UNSAFE_STR_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return _check_result(super().call_binop(context, operator, left, right))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt: str = value.__self__
        inner = wrapped

        is_format_map = value.__name__ == "format_map"

        def checked(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                mapping = args[0] if len(args) == 1 and isinstance(args[0], Mapping) else {}
                _check_str_format(fmt, (), mapping)
            else:
                _check_str_format(fmt, args, kwargs)
            result: str = _check_result(inner(*args, **kwargs))
            return result

        return update_wrapper(checked, inner)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        owner = getattr(__obj, "__self__", None)
        if isinstance(__obj, types.BuiltinMethodType) and isinstance(owner, str | bytes):
            method = __obj.__name__
            if (
                method in _WIDTH_STR_METHODS
                and args
                and isinstance(args[0], int)
                and args[0] > MAX_VALUE_SIZE
            ):
                raise _Problem(f"str.{method}: width must be at most {MAX_VALUE_SIZE:,}")
            if method == "join" and args:
                items = list(args[0])
                total = len(owner) * max(len(items) - 1, 0)
                for item in items:
                    total += len(item) if isinstance(item, str | bytes) else 0
                if total > MAX_VALUE_SIZE:
                    raise _Problem(f"str.join: the result would be longer than {MAX_VALUE_SIZE:,} characters")
                args = (items, *args[1:])
            if (
                method == "replace"
                and isinstance(owner, str)
                and len(args) >= 2
                and all(isinstance(a, str) for a in args[:2])
            ):
                count = args[2] if len(args) > 2 and isinstance(args[2], int) else None
                _check_replace(owner, args[0], args[1], count)
            if method in _CASE_STR_METHODS and len(owner) > MAX_VALUE_SIZE:
                raise _Problem(f"str.{method}: the text is longer than {MAX_VALUE_SIZE:,} characters")
            if method in _SPLIT_STR_METHODS and len(owner) > MAX_VALUE_SIZE:
                _check_split(owner, method, args, kwargs)
        for arg in (*args, *kwargs.values()):
            if not isinstance(arg, str | bytes | int | float | bool | type(None) | Undefined):
                _estimate(arg, MAX_INPUT_SIZE)
        return _check_result(super().call(__context, __obj, *args, **kwargs))


def _check_split(owner: str | bytes, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse splitting a long text into more than :data:`MAX_VALUE_SIZE` pieces (each costs ~50 bytes)."""
    sep = args[0] if args else kwargs.get("sep")
    maxsplit = args[1] if len(args) > 1 else kwargs.get("maxsplit", -1)
    if method == "splitlines":
        pieces = len(owner) + 1
    elif isinstance(sep, str | bytes) and sep and type(sep) is type(owner):
        pieces = owner.count(sep) + 1  # type: ignore[arg-type]
    else:
        pieces = len(owner) // 2 + 1
    if isinstance(maxsplit, int) and maxsplit >= 0:
        pieces = min(pieces, maxsplit + 1)
    if pieces > MAX_VALUE_SIZE:
        raise _Problem(f"str.{method}: the text would be split into more than {MAX_VALUE_SIZE:,} pieces")


class _Hardening(NodeTransformer):
    """AST rewrite: count loop iterations and macro calls; route ``~`` through the size check."""

    @staticmethod
    def _tick(lineno: int) -> nodes.Stmt:
        call = nodes.Call(nodes.EnvironmentAttribute("vaultsync_tick"), [], [], None, None)
        stmt = nodes.ExprStmt(call)
        stmt.set_lineno(lineno)
        return stmt

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.body.insert(0, self._tick(node.lineno))
        return node

    def visit_Macro(self, node: nodes.Macro) -> nodes.Node:
        self.generic_visit(node)
        node.body.insert(0, self._tick(node.lineno))
        return node

    def visit_CallBlock(self, node: nodes.CallBlock) -> nodes.Node:
        self.generic_visit(node)
        node.body.insert(0, self._tick(node.lineno))
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        call = nodes.Call(nodes.EnvironmentAttribute("vaultsync_concat"), list(node.nodes), [], None, None)
        call.set_lineno(node.lineno)
        return call


def _make_environment() -> _Environment:
    env = _Environment(
        undefined=_SafeUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        loader=None,
        finalize=_finalize,
        cache_size=0,
        auto_reload=False,
    )
    for name in _REMOVED_GLOBALS:
        env.globals.pop(name, None)
    for name in _REMOVED_FILTERS:
        env.filters.pop(name, None)
    env.filters.update(_CUSTOM_FILTERS)
    for name, func in list(env.filters.items()):
        env.filters[name] = _guarded(func, name)
    return env


_ENV = _make_environment()


# --------------------------------------------------------------------------------------------- public API


@dataclass(frozen=True)
class _Compiled:
    template: Template
    literals: frozenset[Any]


@dataclass(frozen=True)
class CompiledTemplates:
    """Compiled ``spec.templates``, by Secret key. Make with :func:`compile_templates`."""

    entries: Mapping[str, _Compiled]

    @property
    def keys(self) -> tuple[str, ...]:
        """The Secret keys the templates write."""
        return tuple(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def _literals(ast: nodes.Template) -> frozenset[Any]:
    """Every name, attribute and constant written in the template: safe to repeat in messages."""
    found: set[Any] = set()
    for node in ast.find_all(nodes.Node):
        if isinstance(node, nodes.Name):
            found.add(node.name)
        elif isinstance(node, nodes.Getattr):
            found.add(node.attr)
        elif (
            isinstance(node, nodes.Const)
            and isinstance(node.value, str | int)
            and not isinstance(node.value, bool)
        ):
            found.add(node.value)
        elif isinstance(node, nodes.Keyword):
            found.add(node.key)
    return frozenset(found)


_FORBIDDEN_NODES: tuple[tuple[type[nodes.Node], str], ...] = (
    (nodes.Include, "{% include %}"),
    (nodes.Import, "{% import %}"),
    (nodes.FromImport, "{% from ... import %}"),
    (nodes.Extends, "{% extends %}"),
)


def _compile_one(key: str, source: str) -> _Compiled:
    def fail(problem: str) -> SyncError:
        return SyncError(TEMPLATE_ERROR, f"template {key!r}: {problem}")

    try:
        ast = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise fail(f"syntax error at line {exc.lineno}: {exc.message}") from None
    except RecursionError:
        raise fail("the template is nested too deeply") from None
    except Exception as exc:
        raise fail(f"the template cannot be parsed ({type(exc).__name__})") from None
    for node_type, tag in _FORBIDDEN_NODES:
        found = next(iter(ast.find_all(node_type)), None)
        if found is not None:
            raise fail(
                f"{tag} is not allowed (line {found.lineno}): "
                "templates cannot read files or other templates; "
                "write everything in this template (macros are allowed)"
            )
    literals = _literals(ast)
    # Jinja folds constant expressions (filters of literals) while compiling, and evaluates at render time
    # what fails to fold: folding is charged to a budget of its own, never left in the thread's context (a
    # stale one in a long-lived render worker would stop all later folding).
    budget_token = _BUDGET.set(_Budget())
    try:
        ast = _Hardening().visit(ast)
        template = _ENV.from_string(ast)
    except TemplateSyntaxError as exc:
        raise fail(f"syntax error at line {exc.lineno}: {exc.message}") from None
    except RecursionError:
        raise fail("the template is nested too deeply") from None
    except Exception as exc:
        raise fail(f"the template cannot be compiled ({type(exc).__name__})") from None
    finally:
        _BUDGET.reset(budget_token)
    return _Compiled(template=template, literals=literals)


def compile_templates(templates: Mapping[str, str]) -> CompiledTemplates:
    """Compile every template of ``spec.templates`` (Secret key -> Jinja2 source).

    Raises ``SyncError(TEMPLATE_ERROR, "template 'KEY': syntax error at line N: ...")``.

    Templates are compiled in key order, so the first broken one (by key) is reported.
    """
    entries: dict[str, _Compiled] = {}
    for key in sorted(templates):
        source = templates[key]
        if not isinstance(source, str):
            raise SyncError(
                TEMPLATE_ERROR, f"template {key!r}: must be a string, not {type(source).__name__}"
            )
        entries[key] = _compile_one(key, source)
    return CompiledTemplates(entries={k: entries[k] for k in templates})


def _template_line(exc: BaseException) -> int | None:
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _describe(exc: BaseException) -> str:
    """A description of a render failure that never includes a value."""
    if isinstance(exc, _Problem):
        problem = exc.safe_message
    elif isinstance(exc, _SafeUndefinedError | _SafeSecurityError):
        problem = exc.message or "an undefined value was used"
    elif isinstance(exc, SecurityError):
        problem = "the sandbox refused an operation (SecurityError)"
    elif isinstance(exc, UndefinedError):
        problem = "an undefined value was used (UndefinedError)"
    elif isinstance(exc, RecursionError):
        problem = "too much recursion (RecursionError)"
    elif isinstance(exc, MemoryError):
        problem = "out of memory (MemoryError)"
    elif isinstance(exc, OverflowError):
        problem = "a number or range is too large (OverflowError; range() allows at most 100,000 items)"
    elif isinstance(exc, ZeroDivisionError):
        problem = "division by zero (ZeroDivisionError)"
    elif isinstance(exc, TypeError):
        problem = "an operation or filter got a value of the wrong type (TypeError)"
    elif isinstance(exc, ValueError):
        problem = "an operation or filter got an unsuitable value (ValueError)"
    elif isinstance(exc, LookupError):
        problem = f"a key or index does not exist ({type(exc).__name__})"
    else:
        problem = f"rendering failed ({type(exc).__name__})"
    line = _template_line(exc)
    if line is not None and not isinstance(exc, _SafeUndefinedError | _SafeSecurityError | _Problem):
        problem += f" at line {line}"
    elif line is not None:
        problem += f" (line {line})"
    return problem


def _sensitive_strings(context: Mapping[str, Any]) -> set[str]:
    """Text forms of the values in the render context, to mask in messages (last safeguard)."""
    found: set[str] = set()
    stack: list[Any] = [context.get("secret", {})]
    stack.extend(v for k, v in context.items() if k not in _RESERVED_NAMES)
    steps = 0
    while stack and steps < 100_000:
        steps += 1
        item = stack.pop()
        if isinstance(item, str):
            text = item
        elif isinstance(item, Mapping):
            stack.extend(item.values())
            continue
        elif isinstance(item, list | tuple):
            stack.extend(item)
            continue
        elif isinstance(item, int | float) and not isinstance(item, bool):
            text = str(item)
        else:
            continue
        if len(text) >= _MIN_MASK_LEN:
            found.add(text)
    return found


def _mask(message: str, sensitive: set[str]) -> str:
    for text in sorted(sensitive, key=len, reverse=True):
        if text in message:
            message = message.replace(text, _MASK)
    return message


def _render_one(key: str, compiled: _Compiled, context: Mapping[str, Any], budget: _Budget) -> bytes:
    budget_token = _BUDGET.set(budget)
    literals_token = _LITERALS.set(compiled.literals)
    try:
        chunks: list[str] = []
        size = 0
        for chunk in compiled.template.generate(context):
            size += len(chunk)
            if size > MAX_VALUE_SIZE:
                raise _Problem(f"the output is longer than {MAX_VALUE_SIZE:,} characters")
            budget.charge(len(chunk))
            chunks.append(chunk)
        text = "".join(chunks)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            raise _Problem("the output is not valid Unicode text (it contains a lone surrogate)") from None
    finally:
        _LITERALS.reset(literals_token)
        _BUDGET.reset(budget_token)


def render_templates(compiled: CompiledTemplates, context: Mapping[str, Any]) -> dict[str, bytes]:
    """Render every template with ``context``; returns Secret key -> UTF-8 bytes.

    Every failure raises ``SyncError(TEMPLATE_ERROR, "template 'KEY': <problem>")``; the problem is
    described from the template's own text and exception types only, never from a value.
    """
    out: dict[str, bytes] = {}
    sensitive: set[str] | None = None
    budget = _Budget()  # one for all templates: steps, work and CPU time are per VaultSecret
    for key, entry in compiled.entries.items():
        try:
            out[key] = _render_one(key, entry, context, budget)
        except Exception as exc:
            if sensitive is None:
                sensitive = _sensitive_strings(context)
            problem = _mask(_describe(exc), sensitive)
            raise SyncError(TEMPLATE_ERROR, f"template {key!r}: {problem}") from None
    return out
