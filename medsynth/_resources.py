"""Where the data files medsynth reads at run time are: JSON Schemas, dataset schemas, policies.

The files live in the top-level ``schemas/`` and ``audits/`` folders of the source tree. A wheel
carries both inside the package, as ``medsynth/_data/schemas`` and ``medsynth/_data/audits``
(``[tool.setuptools.package-dir]`` in ``pyproject.toml``), so they are found wherever the wheel
is installed (a virtual environment, ``--user``, ``--target``). A source checkout or an
editable install reads the folders where they are. A missing folder or file is a broken
installation: :class:`~medsynth.errors.MissingDataError` names it and how to reinstall.
"""

from __future__ import annotations

from pathlib import Path

from medsynth.errors import MissingDataError

PACKAGE = Path(__file__).resolve().parent


def data_dirs(name: str) -> tuple[Path, ...]:
    """The places a shipped folder (``"schemas"``, ``"audits"``) may be, in the order tried."""
    return (
        PACKAGE / "_data" / name,  # an installed wheel
        PACKAGE.parent / name,  # a source checkout or an editable install
    )


def shipped_dir(name: str, marker: str) -> Path:
    """The shipped folder ``name``: the first of :func:`data_dirs` holding the file ``marker``.

    Raises:
        MissingDataError: no candidate holds ``marker``; the message lists where it looked.
    """
    candidates = data_dirs(name)
    for candidate in candidates:
        if (candidate / marker).is_file():
            return candidate
    looked = ", ".join(str(c) for c in candidates)
    raise MissingDataError(f"{name}/{marker}", f"looked in: {looked}")


def read_shipped_text(folder: Path, file_name: str) -> str:
    """The text of a shipped file (UTF-8); a missing one raises :class:`MissingDataError`."""
    path = folder / file_name
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MissingDataError(f"{folder.name}/{file_name}", f"no file {path}") from None
