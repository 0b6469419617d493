"""The measurement record, typed: frozen dataclasses with ``to_json`` / ``from_json``.

One class per part of the contract (docs/record.schema.json ``$defs``; docs/contracts.md §2), the
same field names and meanings; ``tests/test_record_schema.py`` checks that the classes and the schema
name the same fields. :func:`spinelesion.measure.measure_labels` builds the record as JSON-ready
dicts (what ``measurements.json`` holds); readers turn it into a :class:`MeasurementRecord` once::

    record = MeasurementRecord.from_json(json.loads(path.read_text()))
    for v in record.vertebrae:
        print(v.display_name, v.height_loss_pct)        # None where not measured, never 0

``from_json`` checks every field's presence and type on the way (:class:`spinelesion.errors.RecordError`
names the first problem and where it is; the full JSON Schema, enums and ranges included, is checked by
the tests on every record the pipeline writes); ``to_json`` gives the dict back
(``from_json(r).to_json() == r`` for every valid record). Values that were not measured are None;
the record's ``flags`` hold the notes saying why.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from spinelesion.errors import RecordError
from spinelesion.vocabulary import SINS_COLLAPSE_WORDS, vertebra_name

Point = tuple[float, float, float]

#: Fields written only when they hold a value (the schema does not require them).
_OPTIONAL = {"omit_if_none": True}


@dataclass(frozen=True, kw_only=True)
class ScanInfo:
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    orientation: str
    modality: str | None


@dataclass(frozen=True, kw_only=True)
class HeightRatios:
    anterior_posterior: float | None
    middle_posterior: float | None
    posterior_neighbours: float | None


@dataclass(frozen=True, kw_only=True)
class VertebraRecord:
    """One vertebra (docs/contracts.md §2): volumes in ml, heights in mm, percentages 0-100."""

    index: int
    level: str | None
    centroid_mm: Point
    body_volume_ml: float
    lesion_volume_ml: float
    lesion_in_body_ml: float
    body_destruction_pct: float | None
    height_anterior_mm: float | None
    height_middle_mm: float | None
    height_posterior_mm: float | None
    expected_heights_mm: tuple[float, float, float] | None
    height_loss_pct: float | None
    genant_grade: int | None
    height_loss_comparison: str | None
    genant_deformity: str | None
    height_loss_confidence: str | None
    height_ratios: HeightRatios | None
    neighbour_posterior_height_mm: float | None
    height_loss_reference_mm: float | None
    height_resolution_pct: float | None
    sins_collapse: str | None
    lesion_type: str | None
    posterolateral: str | None
    reference_normal: bool
    truncated: bool
    canal_source: str

    @property
    def display_name(self) -> str:
        """Its level when known, else "vertebra N"."""
        return vertebra_name(self.level, self.index)

    @property
    def short_name(self) -> str:
        """Its level when known, else "vN" (tables, overlays)."""
        return vertebra_name(self.level, self.index, short=True)

    @property
    def sins_collapse_words(self) -> str | None:
        return None if self.sins_collapse is None else SINS_COLLAPSE_WORDS.get(self.sins_collapse, self.sins_collapse)


@dataclass(frozen=True, kw_only=True)
class LesionRecord:
    id: int
    volume_ml: float
    centroid_mm: Point
    vertebra_index: int | None
    epidural: bool
    confidence: float | None
    tta_sd: float | None
    location: str | None = field(default=None, metadata=_OPTIONAL)


@dataclass(frozen=True, kw_only=True)
class CordRecord:
    mscc_pct: float | None
    mcc_pct: float | None
    worst_centroid_mm: Point | None
    bilsky_grade: str | None
    compression_flag: bool | None


@dataclass(frozen=True, kw_only=True)
class Finding:
    """A flagged fact (spinelesion.measure.findings): ``kind``, where (``vertebra_index``, ``level``),
    the measured ``value`` with its ``unit``, the ``threshold`` it passed, a ``grade`` (Bilsky, Genant),
    the ``lesion_type`` of a destroyed body on CT."""

    kind: str
    vertebra_index: int | None
    level: str | None
    value: float | str | None
    unit: str | None
    threshold: float | None
    grade: str | int | None
    lesion_type: str | None


@dataclass(frozen=True, kw_only=True)
class RecordSettings:
    min_lesion_mm3: float


@dataclass(frozen=True, kw_only=True)
class LevelNamingRecord:
    method: str
    detail: str


@dataclass(frozen=True, kw_only=True)
class ColumnRecord:
    split_method: str
    axis: Point
    label_map: str
    level_naming: LevelNamingRecord | None = field(default=None, metadata=_OPTIONAL)


@dataclass(frozen=True, kw_only=True)
class CordProfile:
    s_mm: tuple[float, ...]
    cord_ap_mm: tuple[float | None, ...]
    cord_area_mm2: tuple[float | None, ...]
    #: "image" (edge voxels counted by their share of cord read from the scan) or "labels"
    edge: str | None = field(default=None, metadata=_OPTIONAL)


@dataclass(frozen=True, kw_only=True)
class MeasurementRecord:
    """A whole record: what ``measurements.json`` holds (docs/record.schema.json)."""

    schema_version: int
    scan: ScanInfo
    vertebrae: tuple[VertebraRecord, ...]
    lesions: tuple[LesionRecord, ...]
    cord: CordRecord
    findings: tuple[Finding, ...]
    flags: tuple[str, ...]
    settings: RecordSettings
    column: ColumnRecord | None
    cord_profile: CordProfile | None
    #: what made the record (``model``: the checkpoint's file name); an open object other tools may add to
    provenance: dict | None = field(default=None, metadata=_OPTIONAL)

    @classmethod
    def from_json(cls, data: dict) -> MeasurementRecord:
        """The typed record of a JSON record (a dict as ``json.load`` gives it).

        Raises:
            RecordError: it is not a valid record (docs/record.schema.json); the message names the
                first problem and where it is.
        """
        return _build(cls, data, "")

    @classmethod
    def read(cls, path: str | Path) -> MeasurementRecord:
        """Read and type a ``measurements.json``; RecordError if unreadable or invalid."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RecordError(f"{path}: not a readable JSON record ({exc})") from None
        try:
            return cls.from_json(data)
        except RecordError as exc:
            raise RecordError(f"{path}: {exc}") from None

    def to_json(self) -> dict:
        """The JSON-ready dict (lists, not tuples; optional fields without a value left out)."""
        return _dump(self)

    def vertebra(self, index: int | None) -> VertebraRecord | None:
        """The vertebra with this ``index``, or None."""
        return next((v for v in self.vertebrae if v.index == index), None) if index is not None else None


def validate(data: dict) -> None:
    """Raise RecordError unless ``data`` has the record's structure: every field of every part, no
    unknown field, each value of its field's type (numbers, strings, booleans, lists, null)."""
    _build(MeasurementRecord, data, "")


_SCALARS = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}


def _build(cls, data, where: str):
    """``cls`` (a dataclass) from ``data``, field by field; RecordError on a missing, unknown or
    mistyped field (``where``: the path so far, for the message)."""
    if not isinstance(data, dict):
        raise RecordError(f"{where or 'the record'}: expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecordError(f"{where or 'the record'}: unknown field(s) {', '.join(unknown)}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING]
    if missing:
        raise RecordError(f"{where or 'the record'}: missing field(s) {', '.join(missing)}")
    hints = typing.get_type_hints(cls)
    return cls(**{n: _convert(hints[n], data[n], f"{where}/{n}".lstrip("/")) for n in fields if n in data})


def _convert(hint, value, where: str):
    """``value`` as type ``hint`` (a dataclass, tuple[...], a scalar, or a union with None)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise RecordError(f"{where}: must not be null")
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return _convert(option, value, where)
            except RecordError:
                if option is options[-1]:
                    raise
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}/{i}") for i, v in enumerate(value))
        if len(value) != len(args):
            raise RecordError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, f"{where}/{i}") for i, (a, v) in enumerate(zip(args, value)))
    if hint is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
        return dict(value)
    if hint is type(None):
        if value is None:
            return None
        raise RecordError(f"{where}: expected null")
    ok = _SCALARS[hint]
    if not isinstance(value, ok) or (hint is not bool and isinstance(value, bool)):
        raise RecordError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def _dump(obj):
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value is None and f.metadata.get("omit_if_none"):
                continue
            out[f.name] = _dump(value)
        return out
    if isinstance(obj, tuple):
        return [_dump(v) for v in obj]
    return obj
