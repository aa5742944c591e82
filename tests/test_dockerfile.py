"""Checks of the Dockerfile without a Docker engine: hadolint (from the venv) and the final stage's shape."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cc|libc6-dev|python3?-dev)\b")


def hadolint_path() -> Path:
    candidate = Path(sys.executable).parent / "hadolint"
    if candidate.exists():
        return candidate
    found = shutil.which("hadolint")
    if found is None:
        pytest.fail(f"hadolint not found next to {sys.executable} nor on PATH: install the dev extras")
    return Path(found)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out: list[tuple[str, str]] = []
    for line in joined.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(text):
        if instruction[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [str(hadolint_path()), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_on_the_same_pinned_base() -> None:
    all_stages = stages(DOCKERFILE.read_text())
    assert len(all_stages) >= 2
    bases = [stage[0][1].split()[0] for stage in all_stages]
    assert len(set(bases)) == 1, bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", bases[0]), bases[0]


def test_final_stage_runs_as_non_root() -> None:
    final = stages(DOCKERFILE.read_text())[-1]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users, "the final stage sets no USER"
    user, _, group = users[-1].partition(":")
    assert user == "65532"
    assert group in ("", "65532")


def test_final_stage_has_no_build_tools() -> None:
    final = stages(DOCKERFILE.read_text())[-1]
    for keyword, args in final:
        if keyword == "RUN":
            assert not COMPILERS.search(args), args
            assert "apt-get install" not in args and "apk add" not in args, args
    copies = [args for keyword, args in final if keyword == "COPY"]
    # Only the venv built in the first stage.
    assert copies == ["--from=builder /opt/venv /opt/venv"]


def test_final_stage_entrypoint_and_environment() -> None:
    final = stages(DOCKERFILE.read_text())[-1]
    entrypoint = [args for keyword, args in final if keyword == "ENTRYPOINT"]
    command = [args for keyword, args in final if keyword == "CMD"]
    assert entrypoint == ['["vaultsync"]']
    assert command == ['["run"]']
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    assert "/opt/venv/bin" in env


def test_builder_builds_a_wheel_into_a_venv() -> None:
    builder = stages(DOCKERFILE.read_text())[0]
    runs = " ".join(args for keyword, args in builder if keyword == "RUN")
    assert "pip wheel" in runs and "--no-deps" in runs
    assert "/opt/venv" in runs


def test_dockerignore_keeps_the_context_small() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!operator/"} <= set(lines)
