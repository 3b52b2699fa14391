"""The ``medsynth`` command line: a thin layer over the Python API.

Each command lives in its own module and only parses options, calls the library and prints.
Library errors become click errors in one place (:class:`MedsynthGroup`), with the exit code the
error class carries: 1 bad data, 2 usage, 3 privacy budget refused, 4 audit FAIL, 5 verification.
"""

from __future__ import annotations

import sys

import click

from medsynth.errors import MedsynthError


class MedsynthFailure(click.ClickException):
    """A library error shown as ``Error: ...`` with the error's own exit code."""

    def __init__(self, error: MedsynthError) -> None:
        super().__init__(str(error))
        self.exit_code = error.exit_code


class MedsynthGroup(click.Group):
    """A click group that turns :class:`MedsynthError` into a clean message and exit code."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except MedsynthError as exc:
            raise MedsynthFailure(exc) from exc


def _version() -> str:
    from medsynth import __version__

    return __version__


@click.group(cls=MedsynthGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), prog_name="medsynth")
def cli() -> None:
    """medsynth: privacy-first synthetic patient records as FHIR R4.

    Learn from a real cohort under patient-level differential privacy (DP-SGD),
    track every epsilon spent, write synthetic patients as FHIR, and audit them.

    Start with `medsynth demo`.
    """


def _register() -> None:
    from medsynth.cli import commands

    for command in commands.COMMANDS:
        if command.name in cli.commands:
            raise RuntimeError(f"duplicate command {command.name!r}")
        cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="medsynth")
    sys.exit(0)
