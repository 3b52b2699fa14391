"""Validate FHIR output folders and print one ``VALID`` line each (used by gpu_check.sh).

Usage: ``python tests/bench/gpu_validate.py FOLDER [FOLDER ...]``; exit status 1 if any
folder has a problem.
"""

from __future__ import annotations

import sys

from medsynth.fhir.validate import validate_output


def main() -> int:
    bad = 0
    for folder in sys.argv[1:]:
        s = validate_output(folder)
        print(f"VALID {folder}: ok={s.ok} files={s.files} resources={s.total} errors={s.n_errors}")
        for error in s.errors[:5]:
            print("   ", error)
        bad += not s.ok
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
