"""Whole measurement records from the few fields a test cares about.

``typed(partial)`` fills every field the partial dict leaves out with a neutral value (null where
the schema allows it, else 0, False, an empty list or the vocabulary's "none") and returns the
:class:`MeasurementRecord`; ``complete(partial)`` the same as JSON. A test then states only what it
is about, and the record it hands to a reader is still a valid one.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from spinelesion import record_types as RT

_NEUTRAL_TEXT = {"orientation": "RAS", "canal_source": "none", "split_method": "none", "label_map": "schema",
                 "kind": "height_loss"}


def _fill(cls, partial: dict) -> dict:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if f.name in partial:
            out[f.name] = _fill_value(hint, partial[f.name])
        elif f.default is dataclasses.MISSING:
            out[f.name] = _neutral(f.name, hint)
    return out


def _fill_value(hint, value):
    if value is None:
        return None
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        hint = next((a for a in inner if dataclasses.is_dataclass(a)), inner[0])
        args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _fill(hint, value)
    if typing.get_origin(hint) is tuple and len(args) == 2 and args[1] is Ellipsis and dataclasses.is_dataclass(args[0]):
        return [_fill(args[0], v) for v in value]
    return value


def _neutral(name: str, hint):
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        return None
    if dataclasses.is_dataclass(hint):
        return _fill(hint, {})
    if typing.get_origin(hint) is tuple:
        return [] if len(args) == 2 and args[1] is Ellipsis else [0.0 if a is float else 0 for a in args]
    return {int: 0, float: 0.0, bool: False, str: _NEUTRAL_TEXT.get(name, "none")}[hint]


def complete(partial: dict) -> dict:
    """A whole JSON record: ``partial`` with every missing field of every part filled in; vertebrae
    without an ``index`` get their position in the list."""
    partial = dict(partial)
    partial["vertebrae"] = [{"index": k, **v} for k, v in enumerate(partial.get("vertebrae") or [])]
    partial["lesions"] = [{"id": k + 1, **x} for k, x in enumerate(partial.get("lesions") or [])]
    partial.setdefault("schema_version", 1)
    partial.setdefault("settings", {"min_lesion_mm3": 30.0})
    return _fill(RT.MeasurementRecord, partial)


def typed(partial: dict) -> RT.MeasurementRecord:
    """:func:`complete`, typed (and so checked field by field)."""
    return RT.MeasurementRecord.from_json(complete(partial))
