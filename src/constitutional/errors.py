"""The one error type the command line turns into a single clear line and exit status 2."""

from __future__ import annotations

from pathlib import Path


class CaiError(Exception):
    """A problem with the user's input (a file, a flag, a spec) that they can fix.

    The message is one line that names the file, the line or record, and the field.
    """


def input_file(path: str | Path) -> Path:
    """``path`` as a ``Path``, which must be a file we can read; else a CaiError naming it."""
    path = Path(path)
    if not path.is_file():
        raise CaiError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    return path


def check_row(where: str, row: dict, fields: tuple[str, ...], choice: tuple[str, tuple] | None = None,
              missing: str = "field {!r} missing") -> None:
    """A record's required ``fields`` are there and ``choice`` (field, allowed values) holds
    one of its values; else a CaiError naming ``where`` (``file:line``) and the field."""
    for field in fields:
        if field not in row:
            raise CaiError(f"{where}: {missing.format(field)}")
    if choice and row[choice[0]] not in choice[1]:
        raise CaiError(f"{where}: field {choice[0]!r}: {row[choice[0]]!r} is not one of "
                       f"{', '.join(map(str, choice[1]))}")
