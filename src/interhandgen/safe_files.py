"""Hardened readers for the file formats users hand to interhandgen: .npz, JSON and YAML.

Each reader turns every way a file can be broken (missing, a folder, truncated, bit-flipped, not UTF-8, nested
too deeply, duplicate keys, wrong container, pickled objects, a .npy renamed .npz) into an
:class:`~interhandgen.exceptions.InputError` (or :class:`MissingFileError`) whose message names the file and,
where there is one, the field. They never unpickle anything.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from interhandgen.exceptions import InputError, MissingFileError

__all__ = ["NpzReader", "read_json", "loads_json", "read_yaml", "reject_bool"]

# Everything numpy/zipfile/zlib raise for a damaged archive member.
_NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, RuntimeError,
               NotImplementedError, UnicodeDecodeError, TypeError, OverflowError, MemoryError)


def _existing_file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a {what} file")
    if not path.is_file():
        raise MissingFileError(f"{what} file not found: {path}")
    return path


class NpzReader:
    """An .npz opened without pickles: ``reader[key]`` reads one field; errors name the file and the field.

    Usable as a context manager; ``files`` lists the fields.
    """

    def __init__(self, path: str | os.PathLike, what: str = ".npz") -> None:
        self.path = _existing_file(path, what)
        try:
            z = np.load(self.path, allow_pickle=False)
        except _NPZ_ERRORS as exc:
            raise InputError(f"{self.path}: not a readable {what} file ({type(exc).__name__}: {exc})") from None
        if not isinstance(z, np.lib.npyio.NpzFile):  # a .npy renamed .npz loads as one bare array
            raise InputError(f"{self.path}: is a single .npy array, not an .npz archive of named fields ({what})")
        self._z = z
        self.files = list(z.files)

    def __contains__(self, key: str) -> bool:
        return key in self.files

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self.files:
            raise InputError(f"{self.path}: missing field '{key}'")
        try:
            return self._z[key]
        except ValueError as exc:
            if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                raise InputError(f"{self.path}: field '{key}' holds pickled Python objects; only numeric and string "
                                 "arrays are read") from None
            raise InputError(f"{self.path}: field '{key}' is unreadable ({type(exc).__name__}: {exc})") from None
        except _NPZ_ERRORS as exc:
            raise InputError(f"{self.path}: field '{key}' is unreadable, the file is damaged "
                             f"({type(exc).__name__}: {exc})") from None

    def close(self) -> None:
        self._z.close()

    def __enter__(self) -> "NpzReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _no_duplicates(source: str):
    def hook(pairs: list[tuple[str, Any]]) -> dict:
        out: dict = {}
        for key, value in pairs:
            if key in out:
                raise InputError(f"{source}: duplicate key {key!r} in one JSON object (the file would silently "
                                 "keep only the last one)")
            out[key] = value
        return out

    return hook


def _reject_constant(source: str):
    def hook(name: str):
        raise InputError(f"{source}: {name} is not valid JSON (a non-finite number)")

    return hook


def loads_json(text: str | bytes, source: str, allow_nan: bool = True) -> Any:
    """Parse JSON text strictly: UTF-8, no duplicate keys, bounded nesting; ``allow_nan=False`` also refuses
    NaN/Infinity (data files keep them, so that the loaders can report the record that holds one)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{source}: not UTF-8 text ({exc})") from None
    try:
        kw = {} if allow_nan else {"parse_constant": _reject_constant(source)}
        return json.loads(text, object_pairs_hook=_no_duplicates(source), **kw)
    except RecursionError:
        raise InputError(f"{source}: JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not valid JSON ({exc})") from None


def read_json(path: str | os.PathLike, what: str = "JSON") -> Any:
    path = _existing_file(path, what)
    return loads_json(path.read_bytes(), str(path))


def read_yaml(path: str | os.PathLike, what: str = "YAML") -> Any:
    """Safe-load a YAML file (no Python objects); syntax errors name the file and the line."""
    import yaml

    path = _existing_file(path, what)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc})") from None
    try:
        return yaml.safe_load(text)
    except RecursionError:
        raise InputError(f"{path}: YAML nested too deeply") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None


def reject_bool(value: Any, where: str) -> None:
    """JSON/YAML ``true``/``false`` where a number belongs (numpy would silently store 1.0/0.0)."""
    if isinstance(value, bool) or (isinstance(value, (list, tuple)) and any(_has_bool(v) for v in value)):
        raise InputError(f"{where}: expected numbers, got a boolean")


def _has_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return True
    if isinstance(v, (list, tuple)):
        return any(_has_bool(x) for x in v)
    return False


def _type_ok(value: Any, annotation: str) -> bool:
    """Whether a YAML/JSON value fits a dataclass annotation written as text ('int', 'float | None', ...).

    bool is never an int or a float here (YAML ``true`` is not 1); int is accepted for float; floats must be
    finite."""
    import math

    options = [a.strip() for a in str(annotation).split("|")]
    if value is None:
        return "None" in options
    for opt in options:
        if opt == "bool" and isinstance(value, bool):
            return True
        if isinstance(value, bool):
            continue
        if opt == "int" and isinstance(value, int):
            return True
        if opt == "float" and isinstance(value, (int, float)) and math.isfinite(value):
            return True
        if opt == "str" and isinstance(value, str):
            return True
        if opt.startswith("tuple[") and isinstance(value, (list, tuple)):
            inner = [t.strip() for t in opt[len("tuple["):-1].split(",")]
            return len(inner) == len(value) and all(_type_ok(v, t) for v, t in zip(value, inner))
    return False


def check_config_types(values: dict, annotations: dict[str, Any], source: str) -> None:
    """Each known key of a config section must have its field's type; the error names the field."""
    for key, value in values.items():
        ann = annotations.get(key)
        if ann is not None and not _type_ok(value, ann):
            if "float" in str(ann) and isinstance(value, str):
                try:
                    float(value)
                    raise InputError(f"{source}.{key} must be a number, got the text {value!r}: YAML reads "
                                     "exponents without a dot as text, write e.g. 1.0e-3")
                except ValueError as exc:
                    if isinstance(exc, InputError):
                        raise
            raise InputError(f"{source}.{key} must be {ann} (finite numbers; true/false is not a number), "
                             f"got {value!r}")
