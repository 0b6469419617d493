"""Findings: what a record flags, as structured objects, and the sentences made from them.

A finding is a plain dict (JSON), one per flagged fact::

    {"kind": "cord_compression" | "cauda_equina_compression" | "epidural_tumour" | "body_destruction"
             | "height_loss" | "sins_collapse" | "posterolateral",
     "vertebra_index": int | None, "level": str | None,   # where (the worst cord cross-section's vertebra)
     "value": number | str | None, "unit": "%" | None,    # the measured figure or category (MSCC; MCC below the conus)
     "threshold": number | None,                           # from which it is a finding, same unit
     "grade": str | int | None,                            # Bilsky grade (cord), Genant grade (height loss)
     "lesion_type": str | None}                            # body destruction on CT: lytic/blastic/mixed

The record keeps them under ``findings`` (docs/record.schema.json); its ``flags`` are
:func:`sentences` of them followed by notes on what could not be measured. Readers (report,
CSV, SR) use ``findings`` and never parse the sentences.
"""

from __future__ import annotations

from spinelesion.measure.settings import MeasureSettings
from spinelesion.vocabulary import SINS_COLLAPSE_WORDS, vertebra_name

#: Body destruction (%) from which a vertebra is flagged.
DESTRUCTION_FLAG_PCT = 5.0
#: Finding kinds, in the order sentences list them.
KINDS = ("cord_compression", "cauda_equina_compression", "epidural_tumour", "body_destruction", "height_loss",
         "sins_collapse", "posterolateral")
#: Genant grade from which height loss is a finding (grade 1: 20-25 % loss).
GENANT_FLAG_GRADE = 1


def _finding(kind: str, *, vertebra: dict | None, value=None, unit=None, threshold=None, grade=None,
             lesion_type=None) -> dict:
    return {"kind": kind, "vertebra_index": None if vertebra is None else vertebra["index"],
            "level": None if vertebra is None else vertebra["level"], "value": value, "unit": unit,
            "threshold": threshold, "grade": grade, "lesion_type": lesion_type}


def find(*, cord: dict, vertebrae: list[dict], worst_vertebra_index: int | None, worst_mscc_pct: float | None,
         settings: MeasureSettings, cauda: bool = False) -> list[dict]:
    """The findings of a record's ``cord`` and ``vertebrae`` parts (see the module docstring); ``cauda``:
    the grade was made on the thecal sac below the conus (``measure/cauda.py``)."""
    out = []
    worst = vertebrae[worst_vertebra_index] if worst_vertebra_index is not None and vertebrae else None
    if cord["compression_flag"] and cauda:
        out.append(_finding("cauda_equina_compression", vertebra=worst, value=cord["mcc_pct"],
                            unit=None if cord["mcc_pct"] is None else "%",
                            threshold=settings.cauda_compressed_mcc_pct, grade=cord["bilsky_grade"]))
    elif cord["compression_flag"]:
        out.append(_finding("cord_compression", vertebra=worst, value=worst_mscc_pct,
                            unit=None if worst_mscc_pct is None else "%", threshold=settings.compression_mscc_pct,
                            grade=cord["bilsky_grade"]))
    elif cord["bilsky_grade"] in ("1a", "1b", "1c"):
        out.append(_finding("epidural_tumour", vertebra=worst, grade=cord["bilsky_grade"]))
    for v in vertebrae:
        if (v["body_destruction_pct"] or 0) >= DESTRUCTION_FLAG_PCT:
            out.append(_finding("body_destruction", vertebra=v, value=v["body_destruction_pct"], unit="%",
                                threshold=DESTRUCTION_FLAG_PCT, lesion_type=v["lesion_type"]))
        if (v["genant_grade"] or 0) >= GENANT_FLAG_GRADE:
            out.append(_finding("height_loss", vertebra=v, value=v["height_loss_pct"], unit="%",
                                grade=v["genant_grade"]))
        if v["sins_collapse"] not in (None, "none"):
            out.append(_finding("sins_collapse", vertebra=v, value=v["sins_collapse"]))
        if v["posterolateral"] not in (None, "none"):
            out.append(_finding("posterolateral", vertebra=v, value=v["posterolateral"]))
    return out


def sentences(findings: list[dict]) -> list[str]:
    """One sentence for the cord finding, then one per vertebra joining its findings."""
    out, per_vertebra = [], {}
    for f in findings:
        where = "" if f["vertebra_index"] is None else f", at {vertebra_name(f['level'], f['vertebra_index'])}"
        if f["kind"] == "cord_compression":
            mscc = "" if f["value"] is None else f", MSCC {f['value']:.0f} %"
            out.append(f"cord compression, Bilsky {f['grade']}{mscc}{where}")
        elif f["kind"] == "cauda_equina_compression":
            mcc = "" if f["value"] is None else f", thecal sac narrowed {f['value']:.0f} %"
            out.append(f"cauda equina compression below the conus, Bilsky {f['grade']}{mcc}{where}")
        elif f["kind"] == "epidural_tumour":
            out.append(f"epidural tumour without cord compression, Bilsky {f['grade']}{where}")
        else:
            per_vertebra.setdefault((f["vertebra_index"], f["level"]), []).append(_part(f))
    out += [f"{vertebra_name(level, index)}: " + "; ".join(parts) for (index, level), parts in per_vertebra.items()]
    return out


def _part(f: dict) -> str:
    if f["kind"] == "body_destruction":
        kind = f" ({f['lesion_type']})" if f["lesion_type"] else ""
        return f"{f['value']:.0f} % of the body destroyed{kind}"
    if f["kind"] == "height_loss":
        return f"height loss {f['value']:.0f} % (Genant {f['grade']})"
    if f["kind"] == "sins_collapse":
        return f"SINS collapse: {SINS_COLLAPSE_WORDS.get(f['value'], f['value'])}"
    return f"{f['value']} posterolateral involvement"
