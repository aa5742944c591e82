"""Go templates of the peers -> vaultsync's Jinja2 templates, for the simple forms only.

The peers' templates are Go ``text/template`` with Sprig; vaultsync's are Jinja2. A template is translated
when every action in it is a plain lookup that both engines print the same way: a secret value
(``.Secrets.key``, ``index .Secrets "key"``, ``get .Secrets "key"``, ``.key`` for External Secrets) or the
object's namespace. Anything else (pipelines, functions, conditionals, ranges) is refused, so that the
caller lists it as not mapped instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# A resolver turns the action's text (without delimiters, trimmed) into a Jinja expression, or None.
Resolver = Callable[[str], str | None]

_KEY = r"[-._a-zA-Z0-9]+"
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


class TemplateNotTranslated(ValueError):
    """The template uses more than plain lookups; the message says which part."""


def jinja_string(key: str) -> str:
    return "'" + key.replace("\\", "\\\\").replace("'", "\\'") + "'"


def secret_lookup(key: str) -> str:
    return "{{ secret[" + jinja_string(key) + "] }}"


def translate(text: str, resolve: Resolver, left: str = "{{", right: str = "}}") -> str:
    """The Jinja2 text of a Go template whose actions are delimited by ``left``/``right``."""
    out: list[str] = []
    pos = 0
    while True:
        start = text.find(left, pos)
        literal = text[pos:] if start < 0 else text[pos:start]
        if any(marker in literal for marker in ("{{", "{%", "{#", "}}", "%}", "#}")):
            raise TemplateNotTranslated(f"the literal text {literal.strip()[:40]!r} holds Jinja delimiters")
        out.append(literal)
        if start < 0:
            return "".join(out)
        end = text.find(right, start + len(left))
        if end < 0:
            raise TemplateNotTranslated(f"an action opened with {left!r} is never closed")
        action = text[start + len(left) : end].strip().strip("-").strip()
        expression = resolve(action)
        if expression is None:
            raise TemplateNotTranslated(
                f"the action {left} {action[:60]} {right} is more than a plain lookup of a secret value"
            )
        out.append(expression)
        pos = end + len(right)


def secrets_map_resolver(root: str = ".Secrets") -> Resolver:
    """Lookups in a map of the secret's values (HashiCorp's ``.Secrets``, ricoberger's ``.Secrets``), and
    ``.Namespace``."""

    def resolve(action: str) -> str | None:
        if action == ".Namespace":
            return "{{ namespace }}"
        match = re.fullmatch(rf"{re.escape(root)}\.({_IDENT})", action)
        if match:
            return secret_lookup(match.group(1))
        match = re.fullmatch(rf'(?:index|get) {re.escape(root)} "({_KEY})"', action)
        if match:
            return secret_lookup(match.group(1))
        return None

    return resolve


def variables_resolver(variables: dict[str, str]) -> Resolver:
    """External Secrets' templates: ``.name`` is the value fetched as secretKey ``name`` (``variables`` maps
    each secretKey to the Jinja expression of its value)."""

    def resolve(action: str) -> str | None:
        match = re.fullmatch(rf"\.({_IDENT})", action) or re.fullmatch(rf'index \. "({_KEY})"', action)
        if match and match.group(1) in variables:
            return variables[match.group(1)]
        return None

    return resolve
