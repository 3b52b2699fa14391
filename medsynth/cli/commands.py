"""The explicit registry of CLI commands (no discovery)."""

from __future__ import annotations

from medsynth.cli.audit import audit
from medsynth.cli.budget import budget
from medsynth.cli.demo import demo
from medsynth.cli.export import export
from medsynth.cli.generate import generate
from medsynth.cli.ingest import ingest
from medsynth.cli.keys import keys
from medsynth.cli.report_cmd import report
from medsynth.cli.schema_cmd import schema
from medsynth.cli.simulate import simulate
from medsynth.cli.train import train

COMMANDS = [
    schema,
    ingest,
    export,
    simulate,
    train,
    generate,
    budget,
    audit,
    keys,
    report,
    demo,
]
