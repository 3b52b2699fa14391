"""The explicit registry of CLI commands (no discovery)."""

from __future__ import annotations

from medsynth.cli.demo import demo
from medsynth.cli.export import export
from medsynth.cli.ingest import ingest
from medsynth.cli.schema_cmd import schema
from medsynth.cli.simulate import simulate

COMMANDS = [schema, ingest, export, simulate, demo]
