"""The measurement record (docs/contracts.md section 2, schema_version 1) of a phantom, from its generation.

Voxel-defined figures (volumes, destroyed fraction, centroids, lesion components, posterolateral
involvement) are counted on the final grid from the generation masks; shape figures (heights,
height loss, MSCC, Bilsky grade) come from the drawn parameters. Definitions:

* destroyed fraction: lesion voxels in the vertebral body region / body-region voxels (body +
  lesion in it) x 100;
* heights: along the vertebra's own axis on its mid-sagittal plane, anterior and posterior at 10 %
  of the body depth inside the anterior and posterior walls, middle at mid-depth; height loss is
  the largest loss of the three against the undeformed height of the same vertebra;
* Genant (1993) semi-quantitative grade: < 20 % 0, 20-25 % 1, 25-40 % 2, > 40 % 3;
* SINS collapse (Fisher et al., Spine 2010): > 50 % collapse "over_50pct"; a collapse (>= 20 %,
  Genant 1 or more) under 50 % "under_50pct"; else "no_collapse_over_50pct_involved" when over 50 %
  of the body is lesion; else "none";
* MSCC (Fehlings et al., Spine 1999) = (1 - di / ((da + db) / 2)) x 100 with the imposed cord AP
  diameter di at the deepest slice; the cord AP diameter elsewhere is constant (da = db = normal);
  MCC: the same on the dural sac (cord + CSF) AP extent;
* Bilsky grade (Bilsky et al., J Neurosurg Spine 2010) as built (see ``pathology``).
"""

from __future__ import annotations

import numpy as np

from spinelesion import labels as L
from spinelesion.data.phantoms.anatomy import body_heights_amp

SCHEMA_VERSION = 1


def genant_grade(height_loss_pct: float) -> int:
    """Genant (1993) semi-quantitative grade from height loss in percent."""
    if height_loss_pct < 20:
        return 0
    if height_loss_pct < 25:
        return 1
    return 2 if height_loss_pct <= 40 else 3


def sins_collapse(height_loss_pct: float, destruction_pct: float) -> str:
    """SINS vertebral body collapse category (Fisher et al., Spine 2010)."""
    if height_loss_pct > 50:
        return "over_50pct"
    if height_loss_pct >= 20:
        return "under_50pct"
    return "no_collapse_over_50pct_involved" if destruction_pct > 50 else "none"


def build_truth(*, params: dict, scan, labels: np.ndarray, vertebra_ids: np.ndarray, region_ids: np.ndarray,
                lesion_source: np.ndarray, canal, line) -> dict:
    """Record for one phantom. Arrays are (X, Y, Z) on ``scan``'s grid; ``lesion_source`` holds the
    generating lesion's index + 1 (255 for the epidural mass) on lesion voxels."""
    import cc3d

    anat, path = params["anatomy"], params["pathology"]
    verts = anat["vertebrae"]
    ct = params["modality"] == "ct"
    vox_ml = scan.voxel_volume_ml
    affine = scan.affine
    world = lambda idx: (affine[:3, :3] @ idx.T).T + affine[:3, 3]  # noqa: E731
    lesion = labels == L.LESION

    vertebrae = []
    for k, v in enumerate(verts):
        mine = vertebra_ids == k + 1
        body = mine & (region_ids == 1)
        n_body = int(body.sum())
        n_les_body = int((body & lesion).sum())
        destruction = 100.0 * n_les_body / n_body if n_body else 0.0
        if v["level"] == "C1":          # the atlas has no body: no heights, no collapse, no destroyed fraction
            h_a = h_m = h_p = h0 = loss = destruction = None
        else:
            h_a, h_m, h_p = body_heights_amp(v)
            h0 = v["height_mm"]
            loss = max(0.0, 100.0 * (1 - min(h_a, h_m, h_p) / h0))
        sources = np.unique(lesion_source[mine & lesion])
        kinds = {path["lesions"][int(i) - 1]["kind"] for i in sources if 0 < i < 255}
        lesion_type = None
        if ct and kinds:
            lesion_type = kinds.pop() if len(kinds) == 1 else "mixed"
        left = bool((mine & lesion & (region_ids == 2)).any())
        right = bool((mine & lesion & (region_ids == 3)).any())
        centre_of = mine if v["level"] == "C1" else body     # C1: the centroid of the whole ring
        centroid = world(np.argwhere(centre_of).mean(axis=0)) if centre_of.any() else np.full(3, np.nan)
        vertebrae.append({
            "index": k, "level": v["level"],
            "centroid_mm": _r(centroid),
            "body_volume_ml": round(n_body * vox_ml, 4),
            "lesion_volume_ml": round(int((mine & lesion).sum()) * vox_ml, 4),
            "body_destruction_pct": _round(destruction),
            "height_anterior_mm": _round(h_a), "height_middle_mm": _round(h_m),
            "height_posterior_mm": _round(h_p), "height_undeformed_mm": _round(h0),
            "height_loss_pct": _round(loss),
            "genant_grade": None if loss is None else genant_grade(loss),
            "sins_collapse": None if loss is None else sins_collapse(loss, destruction),
            "collapse_kind": v["profile"]["kind"],
            "lesion_type": lesion_type,
            "posterolateral": "bilateral" if left and right else "unilateral" if left or right else "none",
        })

    lesions = []
    if lesion.any():
        comps, n = cc3d.connected_components(lesion.astype(np.uint8), connectivity=26, return_N=True)
        centroids = {}
        for comp_id in range(1, n + 1):
            idx = np.argwhere(comps == comp_id)
            vids = vertebra_ids[tuple(idx.T)]
            owners = vids[vids > 0]
            centroid = world(idx.mean(axis=0))
            if owners.size:
                owner = int(np.bincount(owners).argmax()) - 1
            else:
                owner = int(np.argmin([np.linalg.norm(centroid - np.asarray(v["centroid_mm"])) for v in vertebrae]))
            centroids[comp_id] = (owner, len(idx), {"volume_ml": round(len(idx) * vox_ml, 4),
                                                     "centroid_mm": _r(centroid), "vertebra_index": owner,
                                                     "epidural": bool((vids == 0).any())})
        for new_id, (_, _, rec) in enumerate(sorted(centroids.values(), key=lambda t: (t[0], -t[1])), start=1):
            lesions.append({"id": new_id, **rec})

    cord = _cord_truth(path, canal, line, verts)
    record = {
        "schema_version": SCHEMA_VERSION,
        "scan": {"shape": list(scan.shape), "spacing_mm": [round(x, 5) for x in scan.spacing_mm],
                 "orientation": scan.orientation, "modality": scan.modality},
        "vertebrae": vertebrae,
        "lesions": lesions,
        "cord": cord,
        "flags": _flags(vertebrae, cord),
        "source": "spinelesion phantom (truth from generation parameters)",
        "phantom": {"seed": params["seed"], "modality": params["modality"], "healthy": params["healthy"]},
    }
    return record


def _cord_truth(path: dict, canal, line, verts) -> dict:
    grade = path["bilsky_grade"]
    w = canal.worst()
    mscc = 100.0 * (1 - w["cord_ap_worst_mm"] / w["cord_ap_normal_mm"])
    mcc = 100.0 * (1 - w["sac_ap_worst_mm"] / w["sac_ap_normal_mm"])
    epi = path["epidural"]
    worst = None
    level = None
    if epi is not None:
        c, _, a, _ = line.at(canal.s_site)
        worst = _r(c + a * w["cord_centre_v_mm"])
        level = verts[epi["vertebra_index"]]["level"]
    return {"mscc_pct": round(mscc, 3), "mcc_pct": round(mcc, 3), "worst_centroid_mm": worst,
            "bilsky_grade": grade, "compression_flag": grade in ("2", "3"),
            "worst_vertebra_index": None if epi is None else epi["vertebra_index"], "worst_level": level,
            "cord_ap_normal_mm": round(w["cord_ap_normal_mm"], 3),
            "cord_ap_worst_mm": round(w["cord_ap_worst_mm"], 3)}


def _flags(vertebrae: list[dict], cord: dict) -> list[str]:
    flags = []
    if cord["compression_flag"]:
        flags.append(f"cord compression, Bilsky {cord['bilsky_grade']}, MSCC {cord['mscc_pct']:.0f} %, "
                     f"at {cord['worst_level']}")
    elif cord["bilsky_grade"] not in (None, "0"):
        flags.append(f"epidural disease without cord compression, Bilsky {cord['bilsky_grade']}, at {cord['worst_level']}")
    for v in vertebrae:
        if v["genant_grade"] is None:
            continue
        if v["genant_grade"] > 0:
            flags.append(f"{v['level']}: vertebral body collapse {v['height_loss_pct']:.0f} % (Genant {v['genant_grade']})")
        elif v["body_destruction_pct"] > 50:
            flags.append(f"{v['level']}: {v['body_destruction_pct']:.0f} % of the body replaced by tumour")
    return flags


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _r(x) -> list[float]:
    return [round(float(a), 3) for a in x]
