"""``KEY=VALUE,...`` overrides of a settings dataclass, for the benchmarks' ``--variant(s)`` options
(prior_sampler.py: :class:`SamplerSettings`; object_sampling.py: :class:`ObjectSettings`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from interhandgen.exceptions import InputError


def field_overrides(cls: type, items: str, where: str, reserved: tuple[str, ...] = ()) -> tuple[dict[str, Any],
                                                                                               dict[str, str]]:
    """(overrides of ``cls``'s fields, {reserved key: raw value}) from ``items`` = ``KEY=VALUE,KEY=VALUE``.

    Values are parsed by the type of the field's default: bool ``true``/``false``; a tuple ``START:STOP`` (ints); ``none``
    for a field that may be None (else a number); int, float; anything else as the string. ``where`` starts
    every error message (e.g. ``--variant 'x=...'``)."""
    fields = {f.name: f.default for f in dataclasses.fields(cls)}
    optional = {f.name for f in dataclasses.fields(cls) if f.default is None or "None" in str(f.type)}
    overrides: dict[str, Any] = {}
    extra: dict[str, str] = {}
    for item in filter(None, items.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"{where}: {item!r} is not KEY=VALUE")
        if key in reserved:
            extra[key] = value
            continue
        if key not in fields:
            raise InputError(f"{where}: {key!r} is not a {cls.__name__} field ({sorted(fields)})")
        default = fields[key]
        if isinstance(default, bool):
            if value.lower() not in ("true", "false"):
                raise InputError(f"{where}: {key} must be true or false, got {value!r}")
            overrides[key] = value.lower() == "true"
            continue
        try:
            if key in optional and value.lower() == "none":
                overrides[key] = None
            elif default is None:  # an optional number
                overrides[key] = _number(value)
            elif isinstance(default, tuple):
                start, _, stop = value.partition(":")
                overrides[key] = (int(start), int(stop))
            elif isinstance(default, (int, float)):
                overrides[key] = type(default)(value)
            else:
                overrides[key] = value
        except ValueError:
            raise InputError(f"{where}: {key}={value!r} is not a {type(default).__name__} "
                             "(a tuple as START:STOP, an optional number or none)") from None
    return overrides, extra


def _number(value: str) -> int | float:
    try:
        return int(value)
    except ValueError:
        return float(value)


def replaced(settings: Any, items: str, where: str) -> Any:
    """``settings`` (a dataclass instance) with the ``KEY=VALUE,...`` overrides of :func:`field_overrides` applied."""
    return dataclasses.replace(settings, **field_overrides(type(settings), items, where)[0])
