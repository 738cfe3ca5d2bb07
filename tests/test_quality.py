"""Lint, strict types and the layering rule run as part of the test suite."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CODE = ("app", "ingest", "tests", "evals")

# Imports point down: web -> use cases -> adapters -> vocabulary.
LAYERS = {
    "vocabulary": ["app/models.py", "app/settings.py", "app/errors.py", "app/crash.py"],
    "adapters": ["app/index", "app/db", "app/embeddings.py", "app/minilm.py", "app/providers"],
    "use cases": ["app/answer", "ingest"],
}
FORBIDDEN = {
    "vocabulary": (
        "app.index",
        "app.db",
        "app.embeddings",
        "app.providers",
        "app.answer",
        "ingest",
        "app.web",
        "app.services",
        "app.cli",
        "app.backends",
    ),
    "adapters": ("app.answer", "ingest", "app.web", "app.services", "app.cli", "app.backends"),
    "use cases": ("app.web", "app.services", "app.cli", "app.backends"),
}
VENDOR_HOMES = {
    "qdrant_edge": ("app/index/edge.py", "app/index/sparse.py"),
    "qdrant_client": ("app/index/server.py",),
    "sentence_transformers": ("app/minilm.py",),
    "onnxruntime": ("app/minilm.py",),
    "torch": ("app/minilm.py",),
    "openai": ("app/embeddings.py", "app/providers/"),
    "anthropic": ("app/providers/",),
}


def _parse(source: str) -> ast.Module:
    """ast.parse, once more if CPython 3.11 (before its fix of gh-106905) says "AST constructor
    recursion depth mismatch": its AST state is shared between threads, and a thread that
    another test left behind (LangChain parses source too) can be parsing at the same time."""
    for _ in range(3):
        try:
            return ast.parse(source)
        except SystemError:
            continue
    return ast.parse(source)


def _imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(_parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def _files(entry: str) -> list[Path]:
    p = ROOT / entry
    return sorted(p.rglob("*.py")) if p.is_dir() else [p]


@pytest.mark.parametrize("layer", list(LAYERS))
def test_imports_point_down(layer: str) -> None:
    bad = [
        f"{f.relative_to(ROOT)} imports {name}"
        for entry in LAYERS[layer]
        for f in _files(entry)
        for name in _imports(f)
        if name.startswith(FORBIDDEN[layer])
    ]
    assert bad == []


def test_vendor_sdks_stay_in_their_adapters() -> None:
    bad = []
    for f in [*_files("app"), *_files("ingest")]:
        rel = str(f.relative_to(ROOT))
        for name in _imports(f):
            root = name.split(".")[0]
            homes = VENDOR_HOMES.get(root)
            if homes and not rel.startswith(homes):
                bad.append(f"{rel} imports {name}")
    assert bad == []


def test_ruff() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", *(d for d in CODE if (ROOT / d).is_dir())],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
