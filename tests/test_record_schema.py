"""The measurement record against its machine-readable contract, docs/record.schema.json (issue 14).

Real records from ``measure_labels`` / ``measure_files`` (phantoms of several kinds, the merged
"vertebra", "cord", TotalSegmentator-style and custom label maps, an empty map, lesions with a
network confidence, a column cut by the field of view, and the real label maps of
../shared/data/real when present) must validate, as Python objects and after a JSON round trip;
the schema uses ``additionalProperties: false`` where the code controls the keys, so a field
added to the code without the schema fails here. Records with a misspelt key or a value outside a
vocabulary must fail. The phantoms' truth records are a different, older shape: their shared
fields follow the schema, and how they differ is pinned in
``test_phantom_truth_differs_from_the_record_as_documented``.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from jsonschema import Draft202012Validator  # the dev extra (pyproject.toml)

from spinelesion import labels as L
from spinelesion.data.phantoms import make_phantom
from spinelesion.measure import measure_files, measure_labels
from spinelesion.measure.label_maps import BUILTIN_MAPS
from spinelesion.vocabulary import BILSKY_GRADES, SINS_COLLAPSE_WORDS

from conftest import REAL_DATA
import measure_synth  # noqa: E402

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "docs" / "record.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
VALIDATOR = Draft202012Validator(SCHEMA)
#: Small phantoms keep the file fast (a phantom in about a second, a record in well under one).
VOX = 72


def _errors(record, validator=VALIDATOR) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message[:200]}"
            for e in sorted(validator.iter_errors(record), key=lambda e: list(map(str, e.absolute_path)))]


def _measure(ph, **kw) -> dict:
    return measure_labels(labels=ph.labels, affine=ph.scan.affine, image=ph.scan.array,
                          modality=ph.scan.modality, **kw)


def _lesion_probability(points_mm: np.ndarray) -> np.ndarray:
    """A stand-in for the network's lesion probability at (N, 3) RAS+ mm points, in [0, 1]."""
    return 0.5 + 0.5 * np.tanh(points_mm[:, 2] / 50.0)


def _totalsegmentator_style(ph) -> np.ndarray:
    """The phantom as TotalSegmentator v2 'total' labels it: one value per vertebral level (lesion
    voxels of a vertebra included), 79 the cord, and an organ (5, liver) the mapping ignores."""
    by_level = {lvl: int(v) for v, lvl in BUILTIN_MAPS["totalsegmentator"]["levels"].items()}
    out = np.zeros(ph.labels.shape, np.uint8)
    for k, v in enumerate(ph.truth["vertebrae"]):
        out[ph.vertebra_ids == k + 1] = by_level[v["level"]]
    out[ph.labels == L.SPINAL_CORD] = 79
    out[:6, :6, :6] = 5
    return out


def _cut_through_top_body(ph) -> np.ndarray:
    """Labels of an RAS phantom cut along z through the middle of its most superior body."""
    top = int(ph.vertebra_ids.max())
    z = np.nonzero((ph.vertebra_ids == top) & (ph.labels == L.VERTEBRAL_BODY))[2]
    return np.ascontiguousarray(ph.labels[:, :, : (int(z.min()) + int(z.max())) // 2])


@pytest.fixture(scope="module")
def phantoms():
    return {
        "ct3": make_phantom(seed=3, modality="ct", shape_limit_vox=VOX),     # Bilsky 3, a collapsed body
        "ct7": make_phantom(seed=7, modality="ct", shape_limit_vox=VOX),     # crush and wedge, Bilsky 1b
        "ct11": make_phantom(seed=11, modality="ct", shape_limit_vox=VOX),   # under 50 % collapse, mixed
        "ct12": make_phantom(seed=12, modality="ct", shape_limit_vox=VOX),   # Bilsky 1c
        "ct2": make_phantom(seed=2, modality="ct", shape_limit_vox=VOX),
        "t2_6": make_phantom(seed=6, modality="t2", shape_limit_vox=VOX),    # biconcave, Bilsky 2
        "t1_healthy": make_phantom(seed=9, modality="t1", healthy=True, shape_limit_vox=VOX),
        "ct_ras": make_phantom(seed=1, modality="ct", orientation="RAS", oblique=False, shape_limit_vox=VOX),
        "ct_context_c1": make_phantom(seed=5, modality="ct", context=True, shape_limit_vox=64),  # C6..C1
    }


@pytest.fixture(scope="module")
def records(phantoms, tmp_path_factory) -> dict[str, dict]:
    ph = phantoms
    out = {
        "ct_lesions_compression_collapse": _measure(ph["ct3"]),
        "ct_crush_and_wedge": _measure(ph["ct7"]),
        "ct_under_50pct_collapse": _measure(ph["ct11"]),
        "ct_bilsky_1c": _measure(ph["ct12"]),
        "mr_t2": _measure(ph["t2_6"]),
        "mr_t1_healthy": _measure(ph["t1_healthy"]),
        "ct_context_with_c1": _measure(ph["ct_context_c1"]),
        "lowest_level_s1": _measure(ph["ct2"], lowest_level="S1"),     # S1: heights but no height loss
        "lowest_level_counted_past_c1": _measure(ph["ct2"], lowest_level="C2"),  # C2, C1, then null
        "lesion_probability": _measure(ph["ct3"], lesion_probability=_lesion_probability,
                                       lesion_probability_sd=lambda p: 0.25 * _lesion_probability(p)),
        "no_image": measure_labels(labels=ph["ct7"].labels, affine=ph["ct7"].scan.affine),
        "vertebra_map": measure_labels(labels=np.where(ph["ct7"].labels == L.POSTERIOR_ELEMENTS, L.VERTEBRAL_BODY,
                                                       ph["ct7"].labels).astype(np.uint8),
                                       affine=ph["ct7"].scan.affine, image=ph["ct7"].scan.array, modality="CT",
                                       label_map="vertebra"),
        "cord_map": measure_labels(labels=(ph["t2_6"].labels == L.SPINAL_CORD).astype(np.uint8),
                                   affine=ph["t2_6"].scan.affine, modality="MR", label_map="cord"),
        "totalsegmentator_style": measure_labels(labels=_totalsegmentator_style(ph["ct3"]),
                                                 affine=ph["ct3"].scan.affine, image=ph["ct3"].scan.array,
                                                 modality="CT", label_map="totalsegmentator"),
        # a custom mapping (a dict without a name) that leaves the discs out: split by components
        "custom_map_without_discs": measure_labels(
            labels=np.where(ph["ct11"].labels > 0, ph["ct11"].labels + 10, 0).astype(np.uint8),
            affine=ph["ct11"].scan.affine, label_map={"classes": {
                "11": "vertebral_body", "12": "posterior_elements", "13": "lesion", "14": "spinal_cord",
                "15": "thecal_sac"}}),
        "cut_by_field_of_view": measure_labels(labels=_cut_through_top_body(ph["ct_ras"]),
                                               affine=ph["ct_ras"].scan.affine),
        "empty": measure_labels(labels=np.zeros((20, 20, 20), np.uint8), affine=np.eye(4)),
        "cord_only_no_lesion": measure_labels(labels=np.where(ph["t1_healthy"].labels == L.SPINAL_CORD,
                                                              L.SPINAL_CORD, 0).astype(np.uint8),
                                              affine=ph["t1_healthy"].scan.affine, modality="t1"),
    }
    affine, shape = measure_synth.grid()
    out["cauda_equina_compression"] = measure_labels(  # the cord ends at the conus; the sac narrowed below it
        labels=measure_synth.cauda_column(affine, shape, conus_z_mm=65.0, indent_mm=7.0), affine=affine)
    lesion_only = np.zeros((30, 30, 30), np.uint8)
    lesion_only[5:10, 5:10, 5:10] = L.LESION
    lesion_only[20:26, 18:24, 20:26] = L.LESION
    out["lesions_without_vertebrae"] = measure_labels(labels=lesion_only, affine=np.diag([1.5, 1.5, 2.0, 1.0]))
    # what `spinelesion infer` adds (spinelesion/pipeline/case.py)
    infer = copy.deepcopy(out["lesion_probability"])
    infer.setdefault("provenance", {})["model"] = "spinelesion_default.safetensors"
    out["infer_with_provenance"] = infer
    if REAL_DATA.is_dir():  # real label maps, copied first (the shared folder is never touched)
        tmp = tmp_path_factory.mktemp("real")

        def copied(name: str) -> Path:
            dst = tmp / name.replace("/", "__")
            shutil.copy(REAL_DATA / name, dst)
            return dst

        ct = copied("totalseg_ct/example_ct.nii.gz")
        out["real_totalsegmentator"] = measure_files(
            image_path=ct, labels_path=copied("totalseg_ct/example_ct_totalseg.nii.gz"), label_map="totalsegmentator")
        out["real_bodies_and_discs"] = measure_files(
            image_path=ct, labels_path=copied("totalseg_ct/example_ct_body_disc.nii.gz"),
            label_map={"name": "totalseg_body_disc", "classes": {"1": "vertebra", "2": "disc"}})
        out["real_sct_cord"] = measure_files(image_path=copied("sct_t2/t2.nii.gz"),
                                             labels_path=copied("sct_t2/t2_seg-manual.nii.gz"), label_map="cord")
    return out


def test_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["title"] == "spinelesion measurement record, schema version 1"


def test_every_object_the_code_controls_refuses_unknown_keys():
    """additionalProperties false everywhere but provenance (other tools may add to it)."""
    open_objects = []

    def walk(node, path):
        if isinstance(node, dict):
            if "properties" in node and "type" in node and node.get("additionalProperties") is not False:
                open_objects.append(path)
            for key, value in node.items():
                walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}/{i}")

    walk(SCHEMA, "#")
    assert open_objects == ["#/$defs/provenance"]


def test_schema_vocabularies_are_the_codes():
    """The enums that spinelesion/vocabulary.py also lists are the same lists."""
    vertebra, cord = SCHEMA["$defs"]["vertebra"]["properties"], SCHEMA["$defs"]["cord"]["properties"]
    assert vertebra["sins_collapse"]["enum"] == [*SINS_COLLAPSE_WORDS, None]
    assert cord["bilsky_grade"]["enum"] == [*BILSKY_GRADES, None]


def test_records_follow_the_schema(records):
    bad = {name: _errors(r) for name, r in records.items()}
    assert not {name: e for name, e in bad.items() if e}


def test_records_are_plain_json(records):
    """The record as written (json.dumps, no NaN or infinity) reads back equal and still valid."""
    for name, r in records.items():
        back = json.loads(json.dumps(r, allow_nan=False))
        assert back == r, name
        assert not _errors(back), name


def _values(records, part: str, key: str) -> set:
    return {json.dumps(item[key]) for r in records.values() for item in r[part] if key in item}


def test_the_records_reach_the_vocabulary(records):
    """The records above exercise what the schema allows (else passing would prove little)."""
    assert {"0", "2", "3", "null"} <= _values(records, "vertebrae", "genant_grade")
    assert {json.dumps(v) for v in SINS_COLLAPSE_WORDS} <= _values(records, "vertebrae", "sins_collapse")
    assert {'"lytic"', '"blastic"', '"mixed"', "null"} <= _values(records, "vertebrae", "lesion_type")
    assert {'"none"', '"unilateral"', '"bilateral"'} <= _values(records, "vertebrae", "posterolateral")
    assert {'"none"', '"own_shape_and_neighbours"', '"neighbours"', "null"} <= _values(
        records, "vertebrae", "height_loss_comparison")
    assert {'"none"', '"wedge"', '"biconcave"', '"crush"', "null"} <= _values(records, "vertebrae", "genant_deformity")
    assert {'"high"', '"moderate"', '"low"', "null"} <= _values(records, "vertebrae", "height_loss_confidence")
    assert {'"ring"', '"labels"'} <= _values(records, "vertebrae", "canal_source")
    assert {"true", "false"} <= _values(records, "vertebrae", "truncated")
    assert {'"S1"', '"C1"', "null"} <= _values(records, "vertebrae", "level")
    assert "null" in _values(records, "vertebrae", "height_middle_mm")
    assert "null" in _values(records, "vertebrae", "height_ratios")
    cords = [r["cord"] for r in records.values()]
    assert set(BILSKY_GRADES) | {None} <= {c["bilsky_grade"] for c in cords}
    assert {True, False, None} <= {c["compression_flag"] for c in cords}
    lesions = [les for r in records.values() for les in r["lesions"]]
    assert any(les["confidence"] is None for les in lesions)
    assert any(isinstance(les["confidence"], float) for les in lesions)
    assert any(isinstance(les["tta_sd"], float) for les in lesions) and any(les["tta_sd"] is None for les in lesions)
    assert any("location" in les for les in lesions) and any("location" not in les for les in lesions)
    methods = {r["column"]["split_method"] for r in records.values() if r["column"] is not None}
    assert {"levels", "discs", "components", "none"} <= methods
    assert any(r.get("cord_profile") is None and "cord_profile" in r for r in records.values())
    assert any(r.get("cord_profile") for r in records.values())
    from spinelesion.measure.findings import KINDS, sentences

    assert set(KINDS) == {f["kind"] for r in records.values() for f in r["findings"]}
    for name, r in records.items():   # the flags begin with the findings' sentences
        said = sentences(r["findings"])
        assert r["flags"][:len(said)] == said, name
    assert records["empty"]["column"] is None and records["empty"]["cord_profile"] is None   # keys always there
    for r in records.values():  # what the schema cannot say: the profile's arrays run together
        if r.get("cord_profile"):
            assert len({len(v) for k, v in r["cord_profile"].items() if k != "edge"}) == 1


def _spoil(record: dict, change) -> dict:
    spoilt = copy.deepcopy(record)
    change(spoilt)
    return spoilt


def _rename(obj: dict, old: str, new: str) -> None:
    obj[new] = obj.pop(old)


SPOILERS = {
    "root key misspelt": lambda r: _rename(r, "flags", "flag"),
    "finding kind not in the vocabulary": lambda r: r["findings"].append(
        {"kind": "fracture", "vertebra_index": 0, "level": None, "value": 30.0, "unit": "%", "threshold": None,
         "grade": None, "lesion_type": None}),
    "scan key misspelt": lambda r: _rename(r["scan"], "spacing_mm", "spacing"),
    "vertebra key misspelt": lambda r: _rename(r["vertebrae"][0], "genant_grade", "genant_grad"),
    "lesion key misspelt": lambda r: _rename(r["lesions"][0], "volume_ml", "volume_mL"),
    "cord key misspelt": lambda r: _rename(r["cord"], "bilsky_grade", "bilsky"),
    "height ratio key misspelt": lambda r: _rename(r["vertebrae"][0]["height_ratios"], "middle_posterior",
                                                   "mid_posterior"),
    "unknown root field": lambda r: r.update(notes=[]),
    "required field missing": lambda r: r["vertebrae"][0].pop("truncated"),
    "schema_version 2": lambda r: r.update(schema_version=2),
    "genant_grade 4": lambda r: r["vertebrae"][0].update(genant_grade=4),
    "genant_grade as text": lambda r: r["vertebrae"][0].update(genant_grade="0"),
    "sins_collapse misspelt": lambda r: r["vertebrae"][0].update(sins_collapse="over_50_pct"),
    "lesion_type not in the vocabulary": lambda r: r["vertebrae"][0].update(lesion_type="osteolytic"),
    "posterolateral misspelt": lambda r: r["vertebrae"][0].update(posterolateral="bilaterally"),
    "height_loss_comparison misspelt": lambda r: r["vertebrae"][0].update(height_loss_comparison="neighbors"),
    "genant_deformity not in the vocabulary": lambda r: r["vertebrae"][0].update(genant_deformity="fracture"),
    "height_loss_confidence not in the vocabulary": lambda r: r["vertebrae"][0].update(height_loss_confidence="medium"),
    "canal_source not in the vocabulary": lambda r: r["vertebrae"][0].update(canal_source="sac"),
    "bilsky_grade 1d": lambda r: r["cord"].update(bilsky_grade="1d"),
    "bilsky_grade as a number": lambda r: r["cord"].update(bilsky_grade=2),
    "modality MRI": lambda r: r["scan"].update(modality="MRI"),
    "orientation not axis codes": lambda r: r["scan"].update(orientation="RRS"),
    "split_method misspelt": lambda r: r["column"].update(split_method="level"),
    "confidence over 1": lambda r: r["lesions"][0].update(confidence=1.5),
    "tta_sd over 0.5": lambda r: r["lesions"][0].update(tta_sd=0.7),
    "epidural as text": lambda r: r["lesions"][0].update(epidural="yes"),
    "location beside a vertebra index": lambda r: r["lesions"][0].update(location="somewhere"),
    "centroid of two coordinates": lambda r: r["vertebrae"][0].update(centroid_mm=[1.0, 2.0]),
    "destroyed over 100 %": lambda r: r["vertebrae"][0].update(body_destruction_pct=120.0),
    "setting misspelt": lambda r: _rename(r["settings"], "min_lesion_mm3", "min_lesion_mm"),
}


@pytest.mark.parametrize("spoiler", list(SPOILERS))
def test_a_spoilt_record_fails(records, spoiler):
    good = records["ct_lesions_compression_collapse"]
    assert good["lesions"][0]["vertebra_index"] is not None and good["vertebrae"][0]["height_ratios"]
    assert not _errors(good)
    assert _errors(_spoil(good, SPOILERS[spoiler])), spoiler


def _relaxed(node):
    """The schema with every object open (extra keys allowed) and no key required: what is there
    must still have the record's types and vocabularies."""
    if isinstance(node, dict):
        return {k: _relaxed(v) for k, v in node.items()
                if not (k == "required" and "properties" in node) and not (k == "additionalProperties" and v is False)}
    if isinstance(node, list):
        return [_relaxed(v) for v in node]
    return node


#: How a phantom's truth (spinelesion/data/phantoms/truth.py) differs from a measured record:
#: (part, keys only in the truth, keys only in the record). The truth is built from the
#: generation parameters and predates the record's later fields.
TRUTH_DIFFERENCES = {
    ("root", frozenset({"source", "phantom"}), frozenset({"settings", "column", "cord_profile", "findings"})),
    ("vertebrae[]", frozenset({"height_undeformed_mm", "collapse_kind"}),
     frozenset({"lesion_in_body_ml", "expected_heights_mm", "height_loss_comparison", "genant_deformity",
                "height_loss_confidence", "height_ratios", "neighbour_posterior_height_mm",
                "height_loss_reference_mm", "height_resolution_pct", "reference_normal", "truncated",
                "canal_source"})),
    ("lesions[]", frozenset(), frozenset({"confidence", "tta_sd"})),
    ("cord", frozenset({"worst_vertebra_index", "worst_level", "cord_ap_normal_mm", "cord_ap_worst_mm"}),
     frozenset()),
    ("scan", frozenset(), frozenset()),
}


def _key_differences(truth: dict, record: dict) -> set:
    def keys(items):
        return set().union(*(set(i) for i in items)) if items else set()

    parts = {"root": ([truth], [record]), "scan": ([truth["scan"]], [record["scan"]]),
             "vertebrae[]": (truth["vertebrae"], record["vertebrae"]),
             "lesions[]": (truth["lesions"], record["lesions"]), "cord": ([truth["cord"]], [record["cord"]])}
    out = set()
    for part, (t, r) in parts.items():
        if t and r:
            out.add((part, frozenset(keys(t) - keys(r)), frozenset(keys(r) - keys(t))))
    return out


def test_phantom_truth_shares_the_records_types_and_vocabularies(phantoms):
    relaxed = Draft202012Validator(_relaxed(SCHEMA))
    for name, ph in phantoms.items():
        assert not _errors(ph.truth, relaxed), name
        assert not any(isinstance(x, float) and not math.isfinite(x)
                       for v in ph.truth["vertebrae"] for x in v["centroid_mm"]), name


def test_phantom_truth_differs_from_the_record_as_documented(phantoms, records):
    """Not a record of this schema (issue 14 leaves the truth as it is): these keys differ."""
    ph = phantoms["ct3"]
    assert _errors(ph.truth)
    assert _key_differences(ph.truth, records["ct_lesions_compression_collapse"]) == TRUTH_DIFFERENCES


# ---------------------------------------------------------------- the typed record

TYPED = {"scan": "ScanInfo", "vertebra": "VertebraRecord", "lesion": "LesionRecord", "cord": "CordRecord",
         "settings": "RecordSettings", "column": "ColumnRecord", "cord_profile": "CordProfile", "finding": "Finding"}


def test_typed_record_names_the_schemas_fields():
    """Each part's dataclass has exactly the schema's properties (required ones without a default)."""
    import dataclasses

    from spinelesion import record_types as RT

    parts = {**{name: SCHEMA["$defs"][name] for name in TYPED}, "root": SCHEMA}
    for name, part in parts.items():
        cls = RT.MeasurementRecord if name == "root" else getattr(RT, TYPED[name])
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert set(fields) == set(part["properties"]), name
        required = {n for n, f in fields.items() if f.default is dataclasses.MISSING}
        assert required == set(part.get("required", [])), name


def test_typed_record_round_trips_every_record(records):
    from spinelesion.record_types import MeasurementRecord

    for name, record in records.items():
        plain = json.loads(json.dumps(record))
        typed = MeasurementRecord.from_json(plain)
        assert typed.to_json() == plain, name
        assert len(typed.vertebrae) == len(plain["vertebrae"]) and len(typed.findings) == len(plain["findings"])
    typed = MeasurementRecord.from_json(json.loads(json.dumps(records["ct_lesions_compression_collapse"])))
    v = typed.vertebra(typed.findings[0].vertebra_index)
    assert v is not None and v.display_name.startswith(("vertebra", v.level or "-"))
    assert typed.cord.bilsky_grade == "3" and isinstance(typed.lesions[0].centroid_mm, tuple)


@pytest.mark.parametrize("spoil, message", [
    (lambda r: r["cord"].pop("mscc_pct"), "cord: missing field(s) mscc_pct"),
    (lambda r: r["vertebrae"][0].update(height_anterior=1.0), "vertebrae/0: unknown field(s) height_anterior"),
    (lambda r: r["vertebrae"][0].update(genant_grade="2"), "vertebrae/0/genant_grade: expected int"),
    (lambda r: r["lesions"][0].update(epidural=None), "lesions/0/epidural: expected bool"),
    (lambda r: r["lesions"][0].update(confidence="high"), "lesions/0/confidence: expected float"),
    (lambda r: r["scan"].update(shape=[1, 2]), "scan/shape: expected 3 values"),
    (lambda r: r.update(flags="a flag"), "flags: expected a list"),
])
def test_typed_record_refuses_a_spoilt_record(records, spoil, message, tmp_path):
    from spinelesion.errors import RecordError
    from spinelesion.record_types import MeasurementRecord

    record = json.loads(json.dumps(records["ct_lesions_compression_collapse"]))
    spoil(record)
    with pytest.raises(RecordError, match=message.replace("(", r"\(").replace(")", r"\)")):
        MeasurementRecord.from_json(record)
    path = tmp_path / "measurements.json"
    path.write_text(json.dumps(record))
    with pytest.raises(RecordError, match="measurements.json: "):
        MeasurementRecord.read(path)
