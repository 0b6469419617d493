"""Context phantoms' junctions: atlas and axis under the skull base, S1 fused to the sacrum (phantoms.junctions)."""

import json

import numpy as np
import pytest

from spinelesion import labels as L
from spinelesion.data.phantoms import anatomy as an
from spinelesion.data.phantoms import junctions as jn
from spinelesion.data.phantoms.phantom import draw_params, render_phantom
from spinelesion.synthesis.tissues import ID

BONE = [ID["cortex"], ID["marrow"]]
SHAPE = 112


def _levels(params: dict) -> list[str]:
    return [v["level"] for v in params["anatomy"]["vertebrae"]]


def _first_params(want, start: int = 0) -> dict:
    """Healthy, axis-aligned context parameters of the first seed whose levels satisfy ``want``."""
    for seed in range(start, start + 400):
        p = draw_params(seed=seed, modality="ct", context=True, healthy=True, orientation="RAS", oblique=False,
                        shape_limit_vox=SHAPE)
        if want(_levels(p)):
            return p
    raise AssertionError("no such column in 400 seeds")


def _world(ph, mask: np.ndarray) -> np.ndarray:
    idx = np.argwhere(mask)
    return idx @ ph.scan.affine[:3, :3].T + ph.scan.affine[:3, 3]


def _local(ph, mask: np.ndarray, k: int) -> np.ndarray:
    """Voxel centres of ``mask`` in the frame of vertebra ``k`` (l, a, w; mm)."""
    origin, rot = an.build_frames(ph.params["anatomy"])[k + 1]
    return (_world(ph, mask) - origin) @ rot


def _tube(ph, mask: np.ndarray):
    anat = ph.params["anatomy"]
    line = an.Centreline(an.build_frames(anat), anat)
    return line, line.project(_world(ph, mask))


@pytest.fixture(scope="module")
def cervical():
    return render_phantom(_first_params(lambda lv: lv[-1] == "C1"))


@pytest.fixture(scope="module")
def sacral():
    return render_phantom(_first_params(lambda lv: lv[0] == "S1"))


def test_context_columns_reach_the_junctions_in_a_fair_share_of_cases():
    tops, bottoms, kinds = [], [], set()
    for seed in range(300):
        lv = _levels(draw_params(seed=seed, modality="ct", context=True))
        tops.append(lv[-1] == "C1")
        bottoms.append(lv[0] == "S1")
        assert ("C1" in lv) == ("C2" in lv) and lv.count("S1") <= 1 and lv[1:].count("S1") == 0
        kinds.add("cervical" if all(x.startswith("C") for x in lv) else "lumbar" if all(x[0] in "LS" for x in lv)
                  else "thoracic" if all(x.startswith("T") for x in lv) else "mixed")
    assert 0.1 < np.mean(tops) < 0.35 and 0.1 < np.mean(bottoms) < 0.35
    assert kinds == {"cervical", "lumbar", "thoracic", "mixed"}
    assert all(lv in an.LEVELS for lv in _levels(draw_params(seed=3, modality="ct")))   # default: C3..L2


def test_atlas_has_no_body_and_the_dens_rises_into_its_ring(cervical):
    ph = cervical
    lv = _levels(ph.params)
    k1, k2 = lv.index("C1"), lv.index("C2")
    atlas = ph.vertebra_ids == k1 + 1
    assert np.count_nonzero(atlas & (ph.labels == L.POSTERIOR_ELEMENTS)) > 300
    assert not np.any(atlas & (ph.labels == L.VERTEBRAL_BODY))
    c2 = ph.params["anatomy"]["vertebrae"][k2]
    body = _local(ph, (ph.vertebra_ids == k2 + 1) & (ph.labels == L.VERTEBRAL_BODY), k2)
    dens = body[(body[:, 2] > 0.5 * c2["height_mm"] + 4) & (np.abs(body[:, 0]) < c2["dens"]["radius_mm"] + 1)]
    assert len(dens) > 20 and dens[:, 2].max() > 0.5 * c2["height_mm"] + 10        # a peg above the C2 body
    ring = _local(ph, atlas, k2)                                                     # C1 in C2's frame
    w = np.median(dens[:, 2])
    cut = ring[np.abs(ring[:, 2] - w) < 3]
    a_d, r_d = c2["dens"]["a_mm"], c2["dens"]["radius_mm"]
    assert np.any((cut[:, 1] > a_d + r_d) & (np.abs(cut[:, 0]) < 3))               # anterior arch in front
    assert np.any(cut[:, 1] < a_d - 15) and np.any(cut[:, 0] < -r_d) and np.any(cut[:, 0] > r_d)   # arches, sides
    assert not np.any(np.linalg.norm(cut[:, :2] - [0, a_d], axis=1) < r_d - 1)      # no atlas bone in the dens
    disc = _local(ph, ph.labels == L.DISC, k2)
    assert not np.any(disc[:, 2] > 0.5 * c2["height_mm"])                           # no disc above C2


def test_skull_base_is_unlabelled_bone_with_the_cord_through_the_foramen_magnum(cervical):
    ph = cervical
    anat = ph.params["anatomy"]
    line, (s, u, v) = _tube(ph, np.ones(ph.labels.shape, bool))
    g = jn._skull_geometry(line, anat)
    z = (s - g["s0"]).reshape(ph.labels.shape)
    bone = np.isin(ph.tissue, BONE)
    skull = bone & (z > g["z_fm"] + 3) & (ph.vertebra_ids == 0)
    assert np.count_nonzero(skull) > 500 and np.all(ph.labels[skull] == L.BACKGROUND)
    near = (z > g["z_fm"] - 1) & (z < g["z_fm"] + g["t"] + 3)                       # the floor of the fossa
    half_ap = an.canal_half_ap(anat["canal"])
    hole = ((np.abs(u) < 4) & (v > -half_ap - 4) & (v < half_ap)).reshape(z.shape)  # canal and behind it
    assert np.count_nonzero(bone & near & ~hole) > 100 and not np.any(bone & near & hole)
    cord = ph.tissue == ID["cord"]
    assert np.count_nonzero(cord & (z > g["z_fm"] + g["t"] + 3)) > 50                # the medulla above
    assert np.all(ph.labels[z > g["z_fm"] + 1] != L.SPINAL_CORD)                      # spinal cord label ends there
    assert np.count_nonzero((ph.labels == L.SPINAL_CORD) & (z < g["z_fm"]) & (z > 0)) > 20


def test_s1_is_labelled_and_the_sacrum_below_is_tilted_unlabelled_bone_holding_the_canal(sacral):
    ph = sacral
    anat = ph.params["anatomy"]
    s1 = anat["vertebrae"][0]
    assert _levels(ph.params)[:2] == ["S1", "L5"]
    mine = ph.vertebra_ids == 1
    assert np.count_nonzero(mine & (ph.labels == L.VERTEBRAL_BODY)) > 1000
    assert np.count_nonzero(mine & (ph.labels == L.POSTERIOR_ELEMENTS)) > 200
    line, (s, u, v) = _tube(ph, np.ones(ph.labels.shape, bool))
    z = (s - line.vertebra_s[0]).reshape(ph.labels.shape)
    low = z < -(0.5 * s1["height_mm"] + 8)
    bone = np.isin(ph.tissue, BONE) & low & (np.abs(u.reshape(z.shape)) < 60)
    assert np.count_nonzero(bone) > 500 and np.all(ph.labels[bone] == L.BACKGROUND)
    assert not np.any(np.isin(ph.labels, [L.VERTEBRAL_BODY, L.POSTERIOR_ELEMENTS]) & low)
    # a sacral canal (epidural fat) runs inside the bone below the end of the thecal sac, which has no label there
    end = -(0.5 * s1["height_mm"] + anat["sacrum"]["sac_end_mm"])
    canal = (ph.tissue == ID["epidural_fat"]) & (z < end - 2) & (z > end - 25)
    assert np.count_nonzero(canal) > 20
    assert not np.any((ph.labels == L.THECAL_SAC) & (z < end - 1))
    assert np.count_nonzero((ph.labels == L.THECAL_SAC) & (z < -0.5 * s1["height_mm"])) > 0   # sac reaches S2
    # S1 tilts forward on L5: the lumbosacral angle sits in the L5/S1 disc, no disc below S1
    frames = an.build_frames(anat)
    tilt = np.degrees(np.arccos(np.clip(frames[1][1][:, 2] @ frames[2][1][:, 2], -1, 1)))
    assert 10 < tilt < 25
    assert not np.any((ph.labels == L.DISC) & (z < 0))


def test_truth_of_a_bodiless_atlas_is_sane(cervical):
    ph = cervical
    rec = {v["level"]: v for v in ph.truth["vertebrae"]}
    c1 = rec["C1"]
    assert c1["body_volume_ml"] == 0 and c1["height_middle_mm"] is None and c1["genant_grade"] is None
    assert np.all(np.isfinite(c1["centroid_mm"])) and rec["C2"]["height_middle_mm"] > 5
    json.dumps(ph.truth, allow_nan=False)
    json.dumps(ph.params, allow_nan=False)


def test_great_vessels_beside_the_lumbar_column():
    """Aorta and vena cava in front of L2; below L4 they divide into iliac vessels that diverge
    towards the pelvis (the vessel tissue of a real abdomen, labelled background)."""
    import cc3d

    from spinelesion.data.phantoms import make_phantom
    from spinelesion.synthesis.tissues import ID

    ph = make_phantom(seed=0, modality="ct", context=True, shape_limit_vox=128, orientation="RAS", oblique=False)
    levels = ph.params["anatomy"]["levels"]
    assert {"L2", "L5", "S1"} <= set(levels)

    def vessel_slice(name):
        z = int(np.round(np.argwhere(ph.vertebra_ids == levels.index(name) + 1)[:, 2].mean()))
        return ph.tissue[:, :, z] == ID["vessel"], z

    at_l2, _ = vessel_slice("L2")
    assert cc3d.connected_components(at_l2.astype(np.uint8), connectivity=8, return_N=True)[1] >= 2
    spans = []
    for name in ("L5", "S1"):
        mask, _ = vessel_slice(name)
        xs = np.flatnonzero(mask.any(axis=1))
        assert xs.size, name
        spans.append(xs[-1] - xs[0])
    assert spans[1] > spans[0]                                   # the iliac vessels diverge downwards
    assert np.all(ph.labels[ph.tissue == ID["vessel"]] == 0)
