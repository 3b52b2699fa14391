"""The one error hierarchy of medsynth.

Every failure the library raises on purpose is a :class:`MedsynthError`. Each subclass carries
an ``exit_code`` so the CLI maps errors to process exit codes in one place: 1 for bad data,
3 for a refused privacy budget, 4 for an audit that failed its policy. Messages name the bad
value, where it was (file, record, field or JSON path) and, where there is one, the fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


class MedsynthError(Exception):
    """Root of every error medsynth raises deliberately."""

    exit_code: int = 1


@dataclass(frozen=True)
class Problem:
    """One validation problem: where it is and what is wrong."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class ValidationError(MedsynthError):
    """Several problems found at once; raised after collecting all of them."""

    def __init__(self, subject: str, problems: Iterable[Problem]) -> None:
        self.subject = subject
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        n = len(self.problems)
        super().__init__(f"{subject}: {n} problem{'s' if n != 1 else ''}\n{lines}")


class SchemaError(ValidationError):
    """A dataset schema (or another JSON document) does not validate."""


class DataError(MedsynthError):
    """Input data that cannot be used: names the file, record and field."""


class BudgetError(MedsynthError):
    """A DP release would exceed the dataset's epsilon cap; nothing was run."""

    exit_code = 3


class LedgerIntegrityError(MedsynthError):
    """The privacy ledger is tampered, truncated or malformed; it is refused, never repaired."""

    exit_code = 3


class LedgerMissingError(LedgerIntegrityError):
    """No ledger at the given path: a new one is only made on explicit request (budget init)."""


class NotFittedError(MedsynthError):
    """A model was used before ``fit``."""


class VerificationError(MedsynthError):
    """A signed report failed verification."""

    exit_code = 5


class AuditFailed(MedsynthError):
    """An audit ran and its policy verdict is FAIL."""

    exit_code = 4


class MissingDependencyError(MedsynthError):
    """An optional dependency is not installed; the message gives the pip command."""

    def __init__(self, package: str, extra: str | None = None) -> None:
        cmd = f"pip install 'medsynth[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{package} is required for this feature: {cmd}")


class MissingDataError(MedsynthError):
    """A data file medsynth ships (a JSON Schema, a dataset schema, an audit policy) is missing
    from this installation; the message names it and how to reinstall."""

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(
            f"medsynth's shipped file {what} is missing from this installation ({detail}). "
            "Reinstall medsynth: 'pip install --force-reinstall medsynth-<version>.whl' for a "
            "wheel, or 'pip install -e .' in a source checkout that has schemas/ and audits/."
        )
