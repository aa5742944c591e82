"""Write the CRDs and the field tables of the docs from the declarations of :mod:`vaultsync.api`.

``python -m vaultsync.api.generate`` (from a source checkout) writes ``crds/<plural>.yaml``, its copy
in ``charts/vaultsync/crds/`` (Helm reads only files inside the chart) and the tables between the
``<!-- BEGIN GENERATED ... -->`` / ``<!-- END GENERATED ... -->`` markers of each kind's docs page,
leaving the hand-written prose around them alone. ``--check`` writes nothing and exits 1, naming the
files, when any of them differs from what would be written (tests/test_crd.py does the same).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import yaml

from . import KINDS
from .schema import Field, Kind, crd

__all__ = ["expected_files", "field_rows", "main", "render_crd", "render_docs"]

REPO_ROOT = Path(__file__).resolve().parents[3]
CHART_CRDS = Path("charts/vaultsync/crds")
GENERATED_NOTE = (
    "Generated from operator/vaultsync/api/ by `python -m vaultsync.api.generate`: do not edit by hand."
)


class _Dumper(yaml.SafeDumper):
    """Block style, keys in declaration order, long descriptions folded (as a person would write them)."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if (
        len(value) > 80
        and " " in value
        and "\n" not in value
        and value == value.strip()
        and "  " not in value
    ):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=">")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def render_crd(kind: Kind) -> str:
    header = "".join(f"# {line}".rstrip() + "\n" for line in [*kind.header.splitlines(), "", GENERATED_NOTE])
    body = yaml.dump(crd(kind), Dumper=_Dumper, sort_keys=False, width=110, allow_unicode=True)
    return header + body


# ------------------------------------------------------------------------------------------- docs


def _doc_type(f: Field) -> str:
    if f.doc_type:
        return f.doc_type
    if f.type == "array" and f.items is not None:
        return f"[]{_doc_type(f.items)}"
    return f.type


def field_rows(f: Field, prefix: str) -> Iterator[tuple[str, Field]]:
    """Every documented field under ``f``: ``(path, field)``, list items written ``name[].member``."""
    for name, sub in f.properties.items():
        if not sub.documented:
            continue
        path = f"{prefix}.{name}"
        yield path, sub
        yield from field_rows(sub, path)
        if sub.items is not None:
            yield from field_rows(sub.items, f"{path}[]")


def _table(f: Field, prefix: str) -> str:
    lines = ["| field | type | meaning |", "| --- | --- | --- |"]
    for path, sub in field_rows(f, prefix):
        meaning = " ".join(part for part in (sub.description, sub.docs_note) if part).replace("|", "\\|")
        lines.append(f"| `{path}` | {_doc_type(sub)} | {meaning} |")
    return "\n".join(lines)


def _markers(kind: Kind, section: str) -> tuple[str, str]:
    return (
        f"<!-- BEGIN GENERATED {kind.kind} {section} fields: python -m vaultsync.api.generate -->",
        f"<!-- END GENERATED {kind.kind} {section} fields -->",
    )


def render_docs(kind: Kind, page: str) -> str:
    """``page`` with the tables of ``kind``'s spec and status fields regenerated between their markers."""
    for section, f in (("spec", kind.spec), ("status", kind.status)):
        begin, end = _markers(kind, section)
        found = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.DOTALL)
        if not found.search(page):
            raise ValueError(
                f"{kind.docs_page} has no block for the {kind.kind} {section} fields: add the lines\n"
                f"{begin}\n{end}\nwhere the table goes"
            )
        block = f"{begin}\n{_table(f, section)}\n{end}"
        page = found.sub(lambda _: block, page, count=1)  # noqa: B023 (used at once, in this iteration)
    return page


# ------------------------------------------------------------------------------------------- files


def expected_files(root: Path, kinds: Sequence[Kind] = KINDS) -> dict[Path, str]:
    """What the generator writes, by path under ``root``: the CRDs, their chart copies, the docs pages."""
    out: dict[Path, str] = {}
    for kind in kinds:
        text = render_crd(kind)
        out[Path("crds") / kind.crd_file] = text
        out[CHART_CRDS / kind.crd_file] = text
        page = Path(kind.docs_page)
        out[page] = render_docs(kind, out.get(page) or (root / page).read_text())
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vaultsync.api.generate", description=__doc__)
    parser.add_argument(
        "--root", type=Path, default=REPO_ROOT, help="the source checkout (default: %(default)s)"
    )
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    root = Path(args.root)
    stale: list[str] = []
    for path, text in expected_files(root).items():
        target = root / path
        if target.exists() and target.read_text() == text:
            continue
        stale.append(str(path))
        if not args.check:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run python -m vaultsync.api.generate", file=sys.stderr)
        return 1
    for name in stale:
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
