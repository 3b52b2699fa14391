"""Imports run downward only: every import of a medsynth module, at module level or inside a
function, goes to a module of the same layer or a lower one (docs/architecture.md, "Layers")."""

from __future__ import annotations

import ast
from pathlib import Path

import medsynth

PACKAGE = Path(medsynth.__file__).resolve().parent

# Bottom to top. A module's layer is that of the longest prefix listed here.
LAYERS: list[tuple[str, ...]] = [
    ("medsynth.errors", "medsynth._io", "medsynth._resources", "medsynth.core"),
    ("medsynth.schema",),
    ("medsynth.cohort",),
    ("medsynth.fhir", "medsynth.tabular", "medsynth.simulator", "medsynth.simulate"),
    ("medsynth.sources",),
    ("medsynth.encoding",),
    ("medsynth.models",),
    ("medsynth.privacy",),
    ("medsynth.audit",),
    ("medsynth.report",),
    ("medsynth.pipeline",),
    ("medsynth.cli", "medsynth.__main__"),
]
# The package root re-exports names lazily from every layer (the public API).
TOP = "medsynth"


def layer_of(module: str) -> int:
    best, level = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), i
    if level < 0:
        raise AssertionError(f"{module} belongs to no layer; add it to LAYERS and the docs")
    return level


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "medsynth":
                found += [(node.lineno, f"medsynth.{a.name}") for a in node.names]
            elif node.module.startswith("medsynth."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("medsynth.")]
    return found


def upward_imports(name: str, path: Path) -> list[str]:
    """The imports of module ``name`` (source at ``path``) that climb a layer."""
    mine = layer_of(name)
    return [
        f"{path}:{line} {name} -> {target}"
        for line, target in imported(path)
        if target not in ("medsynth.__version__", TOP) and layer_of(target) > mine
    ]


def test_every_import_goes_to_the_same_layer_or_below():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name != TOP:
            upward += upward_imports(name, path)
    assert not upward, "imports that climb a layer:\n" + "\n".join(upward)


def test_an_upward_import_is_caught_even_inside_a_function(tmp_path):
    source = tmp_path / "ledger.py"
    source.write_text(
        "from medsynth.core.canonical import canonical_json\n"
        "def f():\n    from medsynth.pipeline.train import train\n"
    )
    found = upward_imports("medsynth.privacy.ledger", source)
    assert len(found) == 1 and found[0].endswith("-> medsynth.pipeline.train")
    assert layer_of("medsynth.simulate") < layer_of("medsynth.encoding.vocabulary")


def test_the_public_api_names_resolve():
    for name in medsynth.__all__:
        assert getattr(medsynth, name) is not None, name
