"""Assemble the measurement record (docs/contracts.md §2, schema_version 1) from a label map."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from spinelesion.errors import LabelMapError
from spinelesion.io.layout import as_c_order
from spinelesion.measure import body as B
from spinelesion.measure import findings as F
from spinelesion.measure import height_loss as HL
from spinelesion.measure import heights as HT
from spinelesion.measure import geometry as G
from spinelesion.measure import levels as LV
from spinelesion.measure import ribs
from spinelesion.measure.cord import NULL_CORD, measure_cord
from spinelesion.measure.label_maps import apply_label_map, load_label_map
from spinelesion.measure.lesions import find_lesions
from spinelesion.measure.settings import MeasureSettings
from spinelesion.measure.column import Vertebra
from spinelesion.measure.vertebrae import find_vertebrae
from spinelesion.vocabulary import ATYPICAL_LEVELS, LEVEL_ORDER, vertebra_name

RECORD_SCHEMA_VERSION = 1


def measure_labels(*, labels: np.ndarray, affine: np.ndarray, image: np.ndarray | None = None,
                   modality: str | None = None, label_map: str | dict | Path | None = None,
                   lowest_level: str | None = None, settings: MeasureSettings | None = None,
                   lesion_probability: Callable[[np.ndarray], np.ndarray] | None = None,
                   lesion_probability_sd: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """Measure vertebrae, lesions and cord compression from a label map.

    Args:
        labels: (X, Y, Z) integer label map in any voxel orientation.
        affine: (4, 4) voxel -> RAS+ mm.
        image: (X, Y, Z) scan on the same grid (CT in HU gives the lytic/blastic type), or None.
        modality: "CT" or "MR" (also "t1"/"t2"/"mri"), or None.
        label_map: the labels' schema: None/"schema" (ours), "vertebra", "totalsegmentator",
            a JSON file or a dict (see :mod:`spinelesion.measure.label_maps`).
        lowest_level: level of the most inferior vertebra (e.g. "L5") to name levels when the
            labels do not.
        settings: thresholds; defaults of :class:`MeasureSettings` if None.
        lesion_probability: the network's lesion probability at (N, 3) RAS+ mm points -> (N,);
            each lesion's ``confidence`` is its mean over the lesion's voxels (null without it).
        lesion_probability_sd: the same for its standard deviation over test-time augmentation
            passes; each lesion's ``tta_sd`` is its mean over the lesion's voxels (null without it).

    Returns:
        The record of docs/contracts.md §2 (JSON-serialisable dict). Coordinates are RAS+ mm.

    Raises:
        LabelMapError: labels not 3D/integer, image on another grid, unknown schema or level.
    """
    settings = settings or MeasureSettings()
    labels, affine = _check_inputs(labels, affine, image, lowest_level)
    label_map = load_label_map(label_map)  # a bad schema fails even on an empty map
    modality = _modality(modality)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    record = {"schema_version": RECORD_SCHEMA_VERSION,
              "scan": {"shape": [int(s) for s in labels.shape], "spacing_mm": [round(float(s), 4) for s in spacing],
                       "orientation": "".join(__import__("nibabel").aff2axcodes(affine)), "modality": modality},
              "vertebrae": [], "lesions": [], "cord": dict(NULL_CORD), "findings": [], "flags": [],
              "settings": {"min_lesion_mm3": settings.min_lesion_mm3}, "column": None, "cord_profile": None}
    box = G.crop_box(labels, margin=2)  # its nonzero voxels: no whole-volume mask made
    if box is None:
        record["flags"].append("empty label map: nothing could be measured (no vertebrae, lesions or cord)")
        return record
    # C order once: every later step indexes the crop by flat C indices (ravel would copy an F-ordered crop each time)
    mapped = apply_label_map(as_c_order(labels[box], dtype=labels.dtype), label_map)
    classes, levels = mapped.classes, mapped.levels
    inner = G.crop_box(classes != 0, margin=2)  # the classes we measure, without unmapped structures
    if inner is not None and any(i.stop - i.start < n for i, n in zip(inner, classes.shape)):  # e.g. organs
        classes = np.ascontiguousarray(classes[inner])
        levels = None if levels is None else np.ascontiguousarray(levels[inner])
        box = tuple(slice(b.start + i.start, b.start + i.stop) for b, i in zip(box, inner))
    aff = G.cropped_affine(affine, box)
    img = None if image is None else as_c_order(np.asarray(image)[box], dtype=np.float32)
    notes = []
    if mapped.ignored_values:
        notes.append(f"label values {list(mapped.ignored_values)} are not in label map {mapped.name!r}: ignored")
    border = _border(classes.shape, box, labels.shape)
    scan_box = (-np.array([b.start for b in box]), np.array([n - 1 - b.start for b, n in zip(box, labels.shape)]))
    column = find_vertebrae(classes=classes, levels=levels, level_names=mapped.level_names, affine=aff,
                            border_touch=border, lowest_level=lowest_level, settings=settings, scan_box=scan_box,
                            auto_levels=settings.auto_levels)
    # ribs check or name the levels on a CT (not where the label map or the user named them)
    if (image is not None and modality == "CT" and settings.auto_levels
            and column.naming is not None and column.naming.method in LV.RIB_CHECKED_NAMINGS):
        bearing = ribs.rib_bearing(column.vertebrae, image=np.asarray(image), affine=affine, box=box,
                                   grid=G.Grid(classes.shape, aff))
        column.naming = LV.with_ribs(column.vertebrae, column.naming, bearing, axis=column.axis)
    lesions, epidural = find_lesions(classes=classes, affine=aff, vertebrae=column.vertebrae, settings=settings,
                                     lesion_probability=lesion_probability,
                                     lesion_probability_sd=lesion_probability_sd)
    has_lesion = bool(lesions)  # lesions the record reports (at least settings.min_lesion_mm3): Bilsky needs one
    cord, cord_notes, cord_extra = measure_cord(classes=classes, affine=aff, vertebrae=column.vertebrae,
                                                axis=column.axis, epidural_mask=epidural, has_lesion=has_lesion,
                                                settings=settings, border_touch=border, image=img)
    verts, vert_notes = _vertebra_records(column.vertebrae, classes, aff, img, modality, settings)
    record.update(vertebrae=verts, lesions=lesions, cord=cord)
    record["column"] = {"split_method": column.method, "axis": [round(float(x), 4) for x in column.axis],
                        "label_map": mapped.name,
                        "level_naming": None if column.naming is None else column.naming.as_record()}
    record["cord_profile"] = cord_extra.get("profile")
    if not column.vertebrae:
        notes.append("no vertebrae found: vertebral measurements not available")
    record["findings"] = F.find(cord=cord, vertebrae=verts, worst_vertebra_index=cord_extra.get("worst_vertebra_index"),
                                worst_mscc_pct=cord_extra.get("worst_mscc_pct"), settings=settings,
                                cauda=cord_extra.get("site") == "cauda_equina")
    record["flags"] = F.sentences(record["findings"]) + notes + cord_notes + vert_notes
    return record


def _check_inputs(labels, affine, image, lowest_level):
    labels = np.asarray(labels)
    affine = np.asarray(affine, dtype=np.float64)
    if labels.ndim != 3:
        raise LabelMapError(f"label map must be 3D, got shape {labels.shape}")
    if affine.shape != (4, 4) or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise LabelMapError("label map affine must be a finite, invertible 4x4 matrix")
    if not np.issubdtype(labels.dtype, np.integer):
        rounded = np.rint(labels)
        if not np.array_equal(rounded, labels):
            raise LabelMapError("label map holds non-integer values")
        labels = rounded.astype(np.int32)
    if image is not None and np.shape(image) != labels.shape:
        raise LabelMapError(f"label map shape {labels.shape} differs from the image's {np.shape(image)}")
    if lowest_level is not None and lowest_level not in LEVEL_ORDER:
        raise LabelMapError(f"lowest_level {lowest_level!r} is not a level ({LEVEL_ORDER[0]}..{LEVEL_ORDER[-1]})")
    return labels, affine


def _modality(modality: str | None) -> str | None:
    if modality is None:
        return None
    m = modality.strip().upper()
    return "CT" if m == "CT" else "MR" if m in ("MR", "MRI", "T1", "T2", "STIR") else None


def _border(crop_shape, box, full_shape) -> np.ndarray:
    touch = np.zeros(crop_shape, bool)
    for axis, (sl, n) in enumerate(zip(box, full_shape)):
        index = [slice(None)] * 3
        if sl.start == 0:
            index[axis] = 0
            touch[tuple(index)] = True
        if sl.stop == n:
            index[axis] = -1
            touch[tuple(index)] = True
    return touch


#: Levels whose bodies are not shaped like their neighbours': no height loss is computed for them.


def _vertebra_records(vertebrae: list[Vertebra], classes, affine, image, modality, settings):
    """Per-vertebra record entries (docs/contracts.md §2) and notes on what was not measured.

    Height loss is not computed for C1, C2 and sacral levels (their bodies are not comparable with
    their neighbours'; S1's heights are reported as measured), nor for bodies cut by the image
    border or with under 40 % of the median body volume inside the label map.
    """
    grid = G.Grid(classes.shape, affine)
    voxel_mm3 = grid.voxel_mm3
    image = None if image is None else np.ravel(image)  # once: a cropped image is copied by ravel
    notes: list[str] = []
    rows = []
    for v in vertebrae:
        body_pts = v.body_points(grid)
        les_pts = grid.points(v.lesion_idx)
        inb = B.lesion_in_body(v, les_pts, body_pts)
        n_total = v.body_idx.size + int(inb.sum())
        pts = np.concatenate([body_pts, les_pts[inb]])
        rows.append({"v": v, "idx": np.concatenate([v.body_idx, v.lesion_idx[inb]]), "pts": pts, "inb": inb,
                     "les_pts": les_pts,
                     "centroid": G.centroid(pts) if n_total else v.centroid_mm,
                     "body_ml": n_total * voxel_mm3 / 1000.0,
                     "destruction": 100.0 * inb.sum() / n_total if n_total else None})
    median_ml = float(np.median([r["body_ml"] for r in rows])) if rows else 0.0
    for r in rows:
        v = r["v"]
        # cut by the image border, or much smaller than the others (cut by the field of view)
        r["truncated"] = bool(v.truncated or (len(rows) >= 3 and r["body_ml"] < 0.4 * median_ml))
        if r["truncated"]:
            notes.append(f"{vertebra_name(v.level, v.index)}: body cut by the field of view "
                         f"({r['body_ml']:.1f} ml inside): heights not measured")
        r["heights"] = None if r["truncated"] else HT.body_heights_mm(v, r["idx"], grid, points_mm=r["pts"])
        r["comparable"] = r["heights"] is not None and v.level not in ATYPICAL_LEVELS
    compared = [r["heights"] if r["comparable"] else None for r in rows]
    steps = [G.step_along_mm(r["v"].superior, affine) for r in rows]
    positions = HL.column_positions([r["v"].level for r in rows])
    normal = HL.reference_vertebrae(compared, [r["destruction"] for r in rows], settings, positions=positions)
    # a wedged or biconcave body is no reference for its neighbours' posterior heights either
    normal = [n and not d for n, d in zip(normal, HL.deformed_shapes(compared, steps))]
    expected, exp_notes = HL.expected_heights(compared, normal, positions=positions)
    readings = HL.genant_readings(compared, normal, positions, steps)
    notes += exp_notes
    for r in rows:
        if r["heights"] is not None and not r["comparable"]:
            notes.append(f"{r['v'].level}: atypical level, height loss not assessed")
    marrow = None
    if modality == "CT" and image is not None:
        idx = np.concatenate([r["v"].body_idx for r, n in zip(rows, normal) if n] or [np.zeros(0, np.int64)])
        marrow = float(np.median(image[idx])) if idx.size >= 50 else None
    out = []
    for r, exp, is_normal, reading in zip(rows, expected, normal, readings):
        v, h = r["v"], r["heights"]
        loss = None if reading is None else reading["loss_pct"]
        bony = r["inb"] | ~B.in_canal(v, r["les_pts"])  # intraosseous lesion voxels
        # a type needs a smallest lesion's worth of bone lesion: a few voxels of a neighbour's
        # epidural mass across the level's boundary are no lytic lesion of this vertebra
        typed = marrow is not None and bony.sum() * voxel_mm3 >= settings.min_lesion_mm3
        lesion_hu = image[v.lesion_idx[bony]] if typed else np.zeros(0)
        out.append({
            "index": v.index, "level": v.level,
            "centroid_mm": [round(float(x), 2) for x in r["centroid"]],
            "body_volume_ml": round(float(r["body_ml"]), 3),
            "lesion_volume_ml": round(float(v.lesion_idx.size * voxel_mm3 / 1000.0), 3),
            "lesion_in_body_ml": round(float(r["inb"].sum() * voxel_mm3 / 1000.0), 3),
            "body_destruction_pct": None if r["destruction"] is None else round(float(r["destruction"]), 1),
            "height_anterior_mm": None if h is None else round(h[0], 1),
            "height_middle_mm": None if h is None else round(h[1], 1),
            "height_posterior_mm": None if h is None else round(h[2], 1),
            "expected_heights_mm": None if exp is None else [round(x, 1) for x in exp],
            "height_loss_pct": None if loss is None else round(loss, 1),
            "genant_grade": HL.genant_grade(loss),
            **_reading_fields(reading),
            "sins_collapse": B.sins_collapse(loss, r["destruction"], settings),
            "lesion_type": B.lesion_type(lesion_hu, marrow, settings) if modality == "CT" else None,
            "posterolateral": B.posterolateral(v, r["les_pts"], voxel_mm3, settings),
            "reference_normal": is_normal,
            "truncated": r["truncated"],
            "canal_source": v.canal_source,
        })
    return out, notes


def _reading_fields(reading: dict | None) -> dict:
    """Record fields of Genant's reading (:func:`body.genant_readings`): which comparison gave the
    height loss, the heights' ratios behind it, the reference height and the confidence."""
    r2 = lambda x: None if x is None else round(float(x), 3)  # noqa: E731
    r1 = lambda x: None if x is None else round(float(x), 1)  # noqa: E731
    if reading is None:
        return {"height_loss_comparison": None, "genant_deformity": None, "height_loss_confidence": None,
                "height_ratios": None, "neighbour_posterior_height_mm": None, "height_loss_reference_mm": None,
                "height_resolution_pct": None}
    return {"height_loss_comparison": reading["comparison"], "genant_deformity": reading["deformity"],
            "height_loss_confidence": reading["confidence"],
            "height_ratios": {"anterior_posterior": r2(reading["anterior_posterior_ratio"]),
                              "middle_posterior": r2(reading["middle_posterior_ratio"]),
                              "posterior_neighbours": r2(reading["posterior_neighbours_ratio"])},
            "neighbour_posterior_height_mm": r1(reading["neighbour_posterior_mm"]),
            "height_loss_reference_mm": r1(reading["reference_mm"]),
            "height_resolution_pct": r1(reading["resolution_pct"])}


def measure_files(*, image_path: str | os.PathLike, labels_path: str | os.PathLike,
                  label_map: str | dict | Path | None = None, lowest_level: str | None = None,
                  settings: MeasureSettings | None = None) -> dict:
    """Load a scan and its label map (any format ``load_scan`` reads) and measure them.

    Raises:
        LabelMapError: the label map's voxel centres are not the image's (the same grid stored
            in another axis order or direction is accepted and put in the image's order), or the
            labels do not look like ``label_map`` (the message names the mapping that fits).
        NotAScanError: ``image_path`` holds a label map, not a scan.
        ScanLoadError: either file cannot be read.
    """
    from spinelesion.io.checks import require_image
    from spinelesion.io.grid import labels_on_image_grid
    from spinelesion.io.load import load_scan
    from spinelesion.measure.label_maps import check_fits

    scan = load_scan(image_path)
    require_image(scan, hint="--image takes the scan, --labels its label map")  # as infer refuses one
    seg = load_scan(labels_path)
    # the same voxel centres stored in another axis order or direction are put in the image's order
    labels = labels_on_image_grid(seg, like=scan, path=labels_path)
    check_fits(labels, scan.affine, label_map, what=str(labels_path))
    return measure_labels(labels=labels, affine=scan.affine, image=scan.array, modality=scan.modality,
                          label_map=label_map, lowest_level=lowest_level, settings=settings)

