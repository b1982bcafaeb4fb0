"""The project's exception types.

User-facing problems (a bad file, field, argument or value) raise :class:`InterHandGenError` or one of its
subclasses; the CLI prints their message without a traceback and exits with status 2. Anything else is a bug and
surfaces as one, with its traceback.

The input errors also derive from the built-in type a Python caller would expect (``ValueError``,
``FileNotFoundError``), so code that catches those keeps working.
"""

from __future__ import annotations


class InterHandGenError(Exception):
    """Base of every user-facing error: the message names the file, field or argument and what was expected."""


class InputError(InterHandGenError, ValueError):
    """A file, field, argument or value is invalid (wrong shape, range, type, suffix, ...)."""


class MissingFileError(InterHandGenError, FileNotFoundError):
    """A file the user named (or a bundled file) does not exist."""


class ModelMismatchError(InputError):
    """A model file does not fit what it is used with (its hand model, layout version or conditioning)."""


class OutputExistsError(InterHandGenError, FileExistsError):
    """An output the user named already exists and would be overwritten (e.g. a run folder holding a run)."""
