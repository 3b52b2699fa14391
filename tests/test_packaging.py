"""What a wheel of medsynth carries: every package, every data file read at run time, every
third-party import declared as a dependency; a missing data file is a clear error.

The wheel itself is built, installed in a clean virtual environment and run end to end by
``.ci/wheel-smoke.sh``.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

import medsynth._resources as resources
from medsynth.audit.policy import load_policy, policies_dir, shipped_policies
from medsynth.errors import MissingDataError
from medsynth.schema import load_schema, schemas_dir, shipped_schemas
from medsynth.schema.load import load_json_schema

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS, PROJECT = PYPROJECT["tool"]["setuptools"], PYPROJECT["project"]


def test_every_package_is_listed_and_data_packages_map_to_the_top_level_folders():
    listed = set(SETUPTOOLS["packages"])
    data = {p for p in listed if p.startswith("medsynth._data.")}
    inits = ROOT.glob("medsynth/**/__init__.py")
    packages = {".".join(init.parent.relative_to(ROOT).parts) for init in inits}
    assert listed - data == packages
    assert SETUPTOOLS["package-dir"] == {
        "medsynth._data.schemas": "schemas",
        "medsynth._data.audits": "audits",
    }
    globs = SETUPTOOLS["package-data"]
    assert set(globs["medsynth"]) == {"py.typed", "report/templates/*"}
    for package, folder in SETUPTOOLS["package-dir"].items():
        shipped = {p for g in globs[package] for p in (ROOT / folder).glob(g)}
        assert shipped and shipped == set((ROOT / folder).glob("*.json")), package


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _third_party_imports() -> set[str]:
    names = set()
    for path in (ROOT / "medsynth").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"medsynth"}


def test_every_third_party_import_is_a_declared_dependency():
    requirements = PROJECT["dependencies"] + sum(PROJECT["optional-dependencies"].values(), [])
    declared = {_normalise(re.split(r"[<>=!~ \[;]", r)[0]) for r in requirements}
    dists = packages_distributions()
    imports = _third_party_imports()
    assert {"numpy", "scipy", "sklearn", "torch", "opacus"} <= imports
    # An import whose distribution is not installed here (an optional extra) is matched by name.
    undeclared = {
        name: dists.get(name, [])
        for name in imports
        if not declared & {_normalise(d) for d in dists.get(name, [_normalise(name)])}
    }
    assert not undeclared, f"imported by medsynth but not declared in pyproject.toml: {undeclared}"


def test_checkout_finds_the_top_level_folders():
    assert schemas_dir() == ROOT / "schemas" and policies_dir() == ROOT / "audits"
    assert {"default", "strict"} <= set(shipped_policies())
    assert "general-adult" in shipped_schemas()


def test_an_installed_layout_is_preferred(tmp_path, monkeypatch):
    package = tmp_path / "site-packages" / "medsynth"
    (package / "_data" / "audits").mkdir(parents=True)
    (package / "_data" / "schemas").mkdir(parents=True)
    for name in ("default", "strict"):
        text = (ROOT / "audits" / f"{name}.policy.json").read_text(encoding="utf-8")
        (package / "_data" / "audits" / f"{name}.policy.json").write_text(text, encoding="utf-8")
    for path in (ROOT / "schemas").glob("*.json"):
        (package / "_data" / "schemas" / path.name).write_text(path.read_text(encoding="utf-8"))
    monkeypatch.setattr(resources, "PACKAGE", package)
    assert policies_dir() == package / "_data" / "audits"
    assert schemas_dir() == package / "_data" / "schemas"
    assert load_policy("strict").name == "strict"
    assert load_schema("general-adult").name


def test_a_missing_data_file_names_itself_and_the_reinstall(tmp_path, monkeypatch):
    monkeypatch.setattr(resources, "PACKAGE", tmp_path / "medsynth")
    with pytest.raises(MissingDataError, match=r"audits/default\.policy\.json.*Reinstall"):
        load_policy("default")
    with pytest.raises(MissingDataError, match=r"schemas/dataset\.schema\.json.*pip install"):
        load_schema("general-adult")
    monkeypatch.undo()
    load_json_schema.cache_clear()
    try:
        with pytest.raises(MissingDataError, match=r"schemas/no-such\.schema\.json"):
            load_json_schema("no-such.schema.json")
    finally:
        load_json_schema.cache_clear()
