"""Cord compression: centreline, cross-sections, MSCC / MCC and the Bilsky grade.

- The centreline follows the canal (cord + thecal sac): canal centroids smoothed by a local linear
  fit (see ``_cross_sections``). Cross-sections are slices perpendicular to it; the AP direction
  points from the canal to the nearest vertebral body (RAS anterior where there is no bone).
  Area = voxel volume in the slice / slice thickness.
  The cord's AP diameter is 4 x the standard deviation of its cross-section along AP (exact for an
  ellipse, as the Spinal Cord Toolbox's moment-based diameters); it pools every voxel of the
  cross-section, so it is far less sensitive to the voxel grid than an extent. With the image
  (an MR showing the cord against the CSF), each voxel on the cord's edge counts by its share of
  cord read from its signal (partial volume, :func:`~spinelesion.measure.cord_edge.cord_shares`): where the cord runs along a grid
  axis the labels repeat one voxel outline over many cross-sections, the signal does not. The dural canal's
  AP diameter (for MCC) is its extent along the cross-section's mid-sagittal line
  (``_midline_extent``), as measured on mid-sagittal images: an epidural mass indents the sac from
  the front, a crescent whose second moment averages the indentation with the sides and reads
  MCC low (both choices measured in docs/benchmarks.md, "Figures behind design choices").
- MSCC = (1 - di / ((da + db) / 2)) x 100 (Fehlings et al., Spine 1999;24:605-13), di the AP
  diameter at the compressed slice, da and db the mean AP diameters over normal cord above and
  below, in windows of ``mscc_window_length_mm`` (20 mm) starting ``mscc_window_start_mm`` (10 mm)
  from that slice, as the Spinal Cord Toolbox's ``sct_compute_compression`` does (``-extent``,
  ``-distance``). Where only one window lies inside the cord, it alone is used. Diameters are
  first averaged over ``smoothing_mm`` (7 mm) of centreline. The reported MSCC is the largest
  over the slices where epidural tumour fills most of the canal (at least 80 % of its largest
  cross-section there), or over the whole cord when there is none.
  MCC is the same on the dural canal (cord + thecal sac), with its midline AP extent.
- Bilsky epidural spinal cord compression grade (Bilsky et al., J Neurosurg Spine 2010;13:324-8)
  at the slice of worst compression near epidural tumour: 0 bone only; 1a epidural tumour,
  thecal sac not deformed; 1b sac deformed, cord not touched; 1c sac deformed and touching the
  cord, cord not compressed; 2 cord compressed, CSF visible around it; 3 cord compressed, no
  CSF visible. Below the conus, where the canal holds no cord, epidural tumour is graded on the
  thecal sac instead (:mod:`spinelesion.measure.cauda`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from spinelesion import labels as L
from spinelesion.measure import geometry as G
from spinelesion.measure.settings import MeasureSettings
from spinelesion.measure.column import Vertebra
from spinelesion.measure.cauda import BILSKY_ORDER, cauda_grade, cauda_sections
from spinelesion.measure.cord_edge import CORD_CONTRAST_MIN_NOISE, read_cord_edge
from spinelesion.measure.profile import narrowing_pct, smooth_valid

#: The cord part of a record where the cord was not measured: every figure None ("not measured"),
#: the compression flag included (never a negative finding that was not made).
NULL_CORD = {"mscc_pct": None, "mcc_pct": None, "worst_centroid_mm": None, "bilsky_grade": None,
             "compression_flag": None}


def measure_cord(*, classes: np.ndarray, affine: np.ndarray, vertebrae: list[Vertebra], axis: np.ndarray,
                 epidural_mask: np.ndarray, has_lesion: bool, settings: MeasureSettings,
                 border_touch: np.ndarray | None = None,
                 image: np.ndarray | None = None) -> tuple[dict, list[str], dict]:
    """Cord part of the record, notes on what could not be measured, and extras (worst vertebra, profile).

    ``image``: the scan on ``classes``' grid, or None; where it shows the cord against the CSF
    (:func:`~spinelesion.measure.cord_edge.cord_shares`) and ``settings.cord_edge_from_image``, the voxels on the cord's edge count
    by their share of cord."""
    cord = classes == L.SPINAL_CORD
    sac = classes == L.THECAL_SAC
    notes: list[str] = []
    extra: dict = {"worst_vertebra_index": None}
    voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))
    if cord.sum() * voxel_mm3 < 100:
        notes.append("no spinal cord labelled: MSCC, MCC and Bilsky grade not measured")
        record = dict(NULL_CORD)
        if has_lesion and not epidural_mask.any():
            record["bilsky_grade"] = "0"
        return record, notes, extra
    if not sac.any():
        notes.append("no thecal sac labelled: MCC not measured, Bilsky 1a/1b and 2/3 told apart without CSF")
    canal = cord | sac
    flat = np.flatnonzero(canal)
    pts = G.world_points(flat, classes.shape, affine)
    is_cord = cord.ravel()[flat]
    shares = None
    if image is not None:
        edge = read_cord_edge(cord=cord, sac=sac, image=image, flat=flat)
        shares = edge.shares if settings.cord_edge_from_image else None
        if edge.separation_sd is not None and edge.separation_sd < CORD_CONTRAST_MIN_NOISE:
            notes.append(f"the image does not show the cord apart from the CSF (their signals "
                         f"{edge.separation_sd:.1f} noise SDs apart): MSCC and the Bilsky grade rest on the label "
                         "map's outline of the cord alone")
    prof = _cross_sections(pts, is_cord, vertebrae, axis, affine, settings, cord_weight=shares)
    ok = prof["valid"]
    cut = np.zeros(len(ok), bool)
    if border_touch is not None:  # cross-sections cut by the image border are partial
        hit = np.unique(_bin_of(G.world_points(flat[border_touch.ravel()[flat]], classes.shape, affine), prof))
        hit = hit[(hit >= 0) & (hit < len(ok))]
        if hit.size:
            cut[hit] = True
            cut = ndimage.binary_dilation(cut, iterations=max(int(np.ceil(2.0 / prof["step"])), 1))
            ok &= ~cut
    cord_ap, canal_ap = prof["cord_ap"], prof["canal_ap"]
    window = max(int(round(settings.smoothing_mm / prof["step"])), 1)
    mscc = narrowing_pct(smooth_valid(cord_ap, ok, window), prof["s"], ok, settings)
    mcc = (narrowing_pct(smooth_valid(canal_ap, ok, window), prof["s"], ok, settings) if sac.any()
           else np.full(len(ok), np.nan))
    cauda = cauda_sections(has_cord=np.isfinite(cord_ap), has_canal=np.isfinite(canal_ap) & ~cut,
                           centre_mm=prof["centre"], step_mm=prof["step"]) if sac.any() else np.zeros(len(ok), bool)
    record = dict(NULL_CORD)

    near = np.zeros(len(ok), bool)
    if epidural_mask.any():
        e_pts = G.mask_points(epidural_mask, affine)
        e_bin = _bin_of(e_pts, prof)
        keep = (e_bin >= 0) & (e_bin < len(ok))
        e_pts, e_bin = e_pts[keep], e_bin[keep]
        rel = e_pts - prof["centre"][e_bin]
        rel -= np.einsum("ij,ij->i", rel, prof["tangent"][e_bin])[:, None] * prof["tangent"][e_bin]
        e_bin = e_bin[np.linalg.norm(rel, axis=1) <= prof["canal_radius_mm"] + 2.0]  # in or at the canal
        near[np.unique(e_bin)] = True
        reach = int(np.ceil(5.0 / prof["step"]))
        near = ndimage.binary_dilation(near, iterations=reach) if reach else near
        # the site: slices where the tumour fills most of the canal (its deepest part)
        fill = np.bincount(e_bin, minlength=len(ok)).astype(float)
        site = ndimage.binary_dilation(fill >= 0.8 * fill.max()) if fill.max() > 0 else near
        candidates = np.flatnonzero(site & np.isfinite(mscc))
    else:
        candidates = np.flatnonzero(np.isfinite(mscc))
    worst = int(candidates[np.argmax(mscc[candidates])]) if candidates.size else None
    worst_cauda = None
    if not has_lesion:
        record["bilsky_grade"] = None
    elif not epidural_mask.any():
        record["bilsky_grade"] = "0"
    else:
        record["bilsky_grade"], compressed_at = _bilsky_grade(cord, sac, epidural_mask, affine, prof, near=near,
                                                              mscc=mscc, mcc=mcc, settings=settings)
        worst = compressed_at if compressed_at is not None else worst
        if (cauda & near).any():  # tumour below the conus: the sac is graded in the cord's place
            mcc_cauda = narrowing_pct(smooth_valid(canal_ap, cauda, window), prof["s"], cauda, settings)
            grade, at = cauda_grade(cauda=cauda, near=near, mcc=mcc_cauda, settings=settings,
                                    touches_sac=_touch(sac, epidural_mask, affine, prof, cauda & near))
            if BILSKY_ORDER.index(grade) > BILSKY_ORDER.index(record["bilsky_grade"]):
                record["bilsky_grade"], worst_cauda = grade, at
    if worst_cauda is not None:
        record["mcc_pct"] = round(float(mcc_cauda[worst_cauda]), 1)
        record["worst_centroid_mm"] = [round(float(x), 2) for x in prof["centre"][worst_cauda]]
        extra.update(site="cauda_equina", worst_mscc_pct=None, worst_mcc_pct=record["mcc_pct"],
                     worst_vertebra_index=_nearest_vertebra(vertebrae, prof["centre"][worst_cauda]))
    elif worst is not None:
        record["mscc_pct"] = None if not np.isfinite(mscc[worst]) else round(float(mscc[worst]), 1)
        pool = candidates[np.isfinite(mcc[candidates])]
        if pool.size:
            record["mcc_pct"] = round(float(np.max(mcc[pool])), 1)
        record["worst_centroid_mm"] = [round(float(x), 2) for x in prof["centre"][worst]]
        extra["worst_vertebra_index"] = _nearest_vertebra(vertebrae, prof["centre"][worst])
        extra["worst_mscc_pct"] = None if not np.isfinite(mscc[worst]) else round(float(mscc[worst]), 1)
    flag = record["bilsky_grade"] in settings.compression_bilsky_grades
    if settings.compression_mscc_pct is not None and record["mscc_pct"] is not None:
        flag |= record["mscc_pct"] >= settings.compression_mscc_pct
    # no MSCC and no grade: nothing was measured that could say "no compression"
    record["compression_flag"] = None if not flag and record["mscc_pct"] is None and \
        record["bilsky_grade"] is None else bool(flag)
    extra["profile"] = {"s_mm": prof["s"][ok].round(1).tolist(), "cord_ap_mm": cord_ap[ok].round(2).tolist(),
                        "cord_area_mm2": prof["cord_area"][ok].round(1).tolist(),
                        "edge": "labels" if shares is None else "image"}
    return record, notes, extra


def _nearest_vertebra(vertebrae: list[Vertebra], point_mm: np.ndarray) -> int | None:
    """Index (into ``vertebrae``) of the vertebra whose centroid is nearest to ``point_mm`` (3,); None without any."""
    if not vertebrae:
        return None
    return int(np.argmin([np.linalg.norm(v.centroid_mm - point_mm) for v in vertebrae]))


def _bilsky_grade(cord, sac, epidural_mask, affine, prof, *, near, mscc, mcc,
                  settings: MeasureSettings) -> tuple[str, int | None]:
    """(Bilsky grade with epidural tumour present, cross-section of cord compression or None).

    ``near`` (M,) bool marks the cross-sections at epidural tumour; ``mscc`` / ``mcc`` (M,) the
    compression profiles. 2 or 3 where the cord is compressed (MSCC over
    ``cord_compressed_mscc_pct``) with or without CSF left around it; 1c tumour touching the
    cord; 1b the sac touched and deformed (MCC over ``sac_deformed_mcc_pct``); 1a otherwise."""
    compressed = [i for i in np.flatnonzero(near) if np.isfinite(mscc[i]) and mscc[i] >= settings.cord_compressed_mscc_pct]
    if compressed:
        worst = max(compressed, key=lambda i: mscc[i])
        csf = prof["sac_area"][worst] / max(prof["canal_area"][worst], 1e-9)
        no_csf = (csf < settings.csf_visible_min_fraction) if sac.any() else bool(_touch(cord, epidural_mask, affine, prof, worst).any())
        return ("3" if no_csf else "2"), worst
    if _touch(cord, epidural_mask, affine, prof, near).any():
        return "1c", None
    if (sac.any() and _touch(sac, epidural_mask, affine, prof, near).any()
            and np.nanmax(np.where(near, mcc, np.nan), initial=-np.inf) >= settings.sac_deformed_mcc_pct):
        return "1b", None
    return "1a", None


#: Gaussian width (mm) of the local linear fit that smooths the canal centreline: long enough to
#: ride over the dent an epidural mass makes in the canal labels, short against the column's curves.
CENTRELINE_SIGMA_MM = 10.0


def _cross_sections(pts, is_cord, vertebrae, axis, affine, settings, *, cord_weight=None) -> dict:
    """Per-slice cross-section statistics along the canal centreline.

    The centreline: canal centroids in slabs along the canal's principal axis, smoothed by a
    Gaussian-weighted local linear fit (``CENTRELINE_SIGMA_MM``), resampled by arc length; every
    canal voxel is then projected onto it (two Newton steps), so each cross-section is a slab
    perpendicular to the local centreline, not to the global axis (an oblique cut would mix the
    cord's length into its AP diameter wherever the column curves). This is done twice, the
    second time with centroids of the perpendicular slices.
    ``cord_weight``: (N,) share of cord of each point (:func:`~spinelesion.measure.cord_edge.cord_shares`) for the cord's AP diameter
    and area, or None for the labels' (``is_cord``).
    """
    u0 = G.orient_like(G.principal_axis(pts), axis)
    origin = G.centroid(pts)
    t = (pts - origin) @ u0
    step = max(settings.cross_section_step_mm, G.step_along_mm(u0, affine))
    t0 = t.min()
    b = np.floor((t - t0) / step).astype(np.int64)
    nb = int(b.max()) + 1
    tc = t0 + (np.arange(nb) + 0.5) * step
    line = None
    for _pass in range(2):
        count = np.bincount(b, minlength=nb).astype(float)
        mean = np.stack([np.bincount(b, weights=pts[:, k], minlength=nb) for k in range(3)], axis=1)
        has = count > 0
        mean[has] /= count[has, None]
        x = tc if line is None else line["s"]
        centre, tangent = _local_linear(x[has], mean[has], count[has], x, CENTRELINE_SIGMA_MM)
        line = _resample_by_arc(centre, tangent, step)
        b, rel, _ = _project(pts, line)
        nb = len(line["s"])
    centre, tangent = line["centre"], line["tangent"]
    ant = np.empty((nb, 3))
    for i in range(nb):
        hint = G.ANTERIOR
        if vertebrae:
            near = min(vertebrae, key=lambda v: np.linalg.norm(v.centroid_mm - centre[i]))
            if near.canal_centre_mm is not None:
                hint = near.anterior
        ant[i] = G.perpendicular(hint, tangent[i])
    right = np.cross(ant, tangent)
    a, r = np.einsum("ij,ij->i", rel, ant[b]), np.einsum("ij,ij->i", rel, right[b])
    voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))

    def ap_and_area(weight):
        """AP diameter and area of each cross-section, every point counted by its (N,) ``weight`` in [0, 1]."""
        sel = weight > 0
        bins, w = b[sel], weight[sel]
        count = np.bincount(bins, minlength=nb)
        n = np.bincount(bins, weights=w, minlength=nb)
        area = n * voxel_mm3 / step
        with np.errstate(invalid="ignore", divide="ignore"):
            sd = {}
            for name, x in (("a", a), ("r", r)):
                s1 = np.bincount(bins, weights=w * x[sel], minlength=nb)
                s2 = np.bincount(bins, weights=w * x[sel] ** 2, minlength=nb)
                sd[name] = np.sqrt(np.clip(s2 / n - (s1 / n) ** 2, 0, None))
            width = 4.0 * sd["r"]
            ap = 4.0 * sd["a"]
        return np.where((count >= 3) & (width > 0), ap, np.nan), area

    # the cord's points by the labels, or its edge voxels on both sides of the outline by their share
    cord_ap, cord_area = ap_and_area(is_cord.astype(float) if cord_weight is None else cord_weight)
    _, canal_area = ap_and_area(np.ones(len(pts)))
    mid_i = nb // 2  # grid steps along the column's AP and lateral directions, taken at its middle
    canal_ap = _midline_extent(a, r, b, nb, half_band_mm=max(1.0, 0.6 * G.step_along_mm(right[mid_i], affine)),
                               step_mm=G.step_along_mm(ant[mid_i], affine))
    _, sac_area = ap_and_area((~is_cord).astype(float))
    canal_radius = float(np.percentile(np.hypot(a, r), 98))
    valid = np.isfinite(cord_ap)
    if valid.any():
        edge = int(np.ceil(3.0 / step))
        idx = np.flatnonzero(valid)
        valid[idx[:edge]] = False
        valid[idx[len(idx) - edge:]] = False
        valid &= cord_area >= 0.5 * np.median(cord_area[idx])
    return {"s": line["s"], "step": step, "centre": centre, "tangent": tangent, "line": line, "nb": nb,
            "cord_ap": cord_ap, "canal_ap": canal_ap, "cord_area": cord_area,
            "canal_area": canal_area, "sac_area": sac_area, "valid": valid, "canal_radius_mm": canal_radius}


def _midline_extent(a: np.ndarray, r: np.ndarray, b: np.ndarray, nb: int, *, half_band_mm: float,
                    step_mm: float) -> np.ndarray:
    """(nb,) AP extent (mm) of each cross-section's points within ``half_band_mm`` of its own
    mid-sagittal line (the mean of ``r`` in that cross-section), plus one voxel step: the canal's
    AP diameter as measured on a mid-sagittal image (Fehlings 1999). An indentation by an
    epidural mass shortens it fully, where a second moment would average it with the sides."""
    n = np.bincount(b, minlength=nb).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mid = np.bincount(b, weights=r, minlength=nb) / n
    near = np.abs(r - mid[b]) <= half_band_mm
    hi = np.full(nb, -np.inf)
    lo = np.full(nb, np.inf)
    np.maximum.at(hi, b[near], a[near])
    np.minimum.at(lo, b[near], a[near])
    extent = hi - lo + step_mm
    return np.where(np.isfinite(extent) & (np.bincount(b[near], minlength=nb) >= 3), extent, np.nan)


def _local_linear(x: np.ndarray, y: np.ndarray, w: np.ndarray, at: np.ndarray, sigma: float):
    """Gaussian-weighted local linear fit of (N, 3) points ``y`` against (N,) ``x``, weights ``w``:
    value (M, 3) and unit derivative direction (M, 3) at each of ``at`` (M,)."""
    d = x[None, :] - at[:, None]                                   # (M, N)
    k = w[None, :] * np.exp(-0.5 * (d / sigma) ** 2)
    s0, s1, s2 = k.sum(1), (k * d).sum(1), (k * d * d).sum(1)
    m0, m1 = k @ y, (k * d) @ y                                    # (M, 3)
    det = np.maximum(s0 * s2 - s1 * s1, 1e-12)
    value = (s2[:, None] * m0 - s1[:, None] * m1) / det[:, None]
    slope = (s0[:, None] * m1 - s1[:, None] * m0) / det[:, None]
    norm = np.linalg.norm(slope, axis=1, keepdims=True)
    return value, slope / np.maximum(norm, 1e-12)


def _resample_by_arc(centre: np.ndarray, tangent: np.ndarray, step: float) -> dict:
    """A centreline sampled every ``step`` mm of arc length: s (M,), centre and unit tangent (M, 3)."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(centre, axis=0), axis=1))])
    s = np.arange(0.0, arc[-1] + 1e-9, step) if arc[-1] > 0 else np.zeros(1)
    c = np.stack([np.interp(s, arc, centre[:, k]) for k in range(3)], axis=1)
    tg = np.stack([np.interp(s, arc, tangent[:, k]) for k in range(3)], axis=1)
    tg /= np.maximum(np.linalg.norm(tg, axis=1, keepdims=True), 1e-12)
    # the along-line coordinate of each sample, to seed projections
    u = G.centroid(tg)
    u /= np.linalg.norm(u)
    return {"s": s, "centre": c, "tangent": tg, "u": u, "u_of_s": (c - c[0]) @ u, "step": step}


def _initial_s(points: np.ndarray, line: dict) -> np.ndarray:
    along = (points - line["centre"][0]) @ line["u"]
    order = np.argsort(line["u_of_s"])
    return np.interp(along, line["u_of_s"][order], line["s"][order])


def _project(points: np.ndarray, line: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest centreline sample (M,) of each of (M, 3) points, the point's offset (M, 3) from the
    centreline perpendicular to its tangent, and its arc length (M,) (two Newton steps)."""
    s = _initial_s(points, line)
    n, step = len(line["s"]), line["step"]
    for _ in range(2):
        j = np.clip(np.rint(s / step).astype(np.int64), 0, n - 1)
        s = line["s"][j] + np.einsum("ij,ij->i", points - line["centre"][j], line["tangent"][j])
    j = np.clip(np.rint(s / step).astype(np.int64), 0, n - 1)
    rel = points - line["centre"][j]
    rel -= np.einsum("ij,ij->i", rel, line["tangent"][j])[:, None] * line["tangent"][j]
    return j, rel, s


def _bin_of(points: np.ndarray, prof: dict) -> np.ndarray:
    """Cross-section index (nearest centreline sample) of (N, 3) points; -1 beyond either end."""
    if len(points) == 0:
        return np.zeros(0, np.int64)
    j, _, s = _project(points, prof["line"])
    half = 0.5 * prof["step"]
    return np.where((s < -half) | (s > prof["s"][-1] + half), -1, j)


def _touch(tissue: np.ndarray, epidural: np.ndarray, affine, prof, where) -> np.ndarray:
    """Slices (bool per bin, limited to ``where``) where epidural tumour touches ``tissue`` (6-neighbourhood).

    Only the tissue's bounding box grown by one voxel can touch it: the dilation runs there."""
    hit = np.zeros(prof["nb"], bool)
    box = G.crop_box(tissue, margin=1)
    contact = None if box is None else ndimage.binary_dilation(tissue[box]) & epidural[box]
    if contact is not None and contact.any():
        bins = _bin_of(G.box_mask_points(contact, box, tissue.shape, affine), prof)
        hit[bins[bins >= 0]] = True
    mask = np.zeros(prof["nb"], bool)
    mask[where] = True
    return hit & mask
