"""The cord's AP diameter from the image's partial volume (issue 17: MSCC within 5 points with the image).

A label map knows the cord's outline to a voxel: where the cord runs along a grid axis the same set of
voxels repeats and its AP diameter steps by whole voxels. The image knows more: a voxel on the cord's
edge holds cord and CSF in proportion. The phantoms' own images at <= 1.6 mm hold no partial volume, so
these tests re-draw the canal from a 3x finer sampling (``partial_volume_image``), as a scanner averages.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from spinelesion import labels as L
from spinelesion.data.phantoms.partial_volume import canal_fractions, partial_volume_image
from spinelesion.data.phantoms.phantom import draw_params, render_phantom
from spinelesion.measure import measure_labels
from spinelesion.measure.cord_edge import cord_shares

pytestmark = pytest.mark.slow


def _phantom(seed: int, *, bilsky: str, modality: str = "t2", voxel_mm: float = 1.0):
    drawn = draw_params(seed=seed, modality=modality, bilsky=bilsky, orientation=None, oblique=None,
                        shape_limit_vox=480, context=False)
    params = copy.deepcopy(drawn)
    params["grid"]["spacing_mm"] = [voxel_mm] * 3
    return render_phantom(params)


@pytest.fixture(scope="module")
def straight_cord():
    """Seed 537 at 1 mm: an uncompressed cord (truth MSCC 0) that runs along the grid over the
    tumour's site, where the labels read 5.9 % (docs/benchmarks.md, "MSCC at <= 1 mm")."""
    return _phantom(537, bilsky="1c")


def test_canal_fractions_match_the_labels_at_voxel_centres(straight_cord):
    ph = straight_cord
    cord = ph.labels == L.SPINAL_CORD
    idx = np.nonzero(cord)
    box = tuple(slice(max(0, int(i.min()) - 2), min(n, int(i.max()) + 3)) for i, n in zip(idx, cord.shape))
    share, csf = canal_fractions(ph.params, affine=ph.scan.affine, box=box)
    assert share.shape == cord[box].shape
    assert np.mean((share > 0.5) == cord[box]) > 0.995
    assert share.sum() == pytest.approx(cord.sum(), rel=0.01)  # the same volume, sub-voxel
    edge = (share > 0) & (share < 1)
    assert edge.sum() > 0.2 * cord.sum()                        # a real rim of mixed voxels
    assert np.all(share + csf <= 1.0 + 1e-6)


def test_the_image_reads_the_uncompressed_cord_as_uncompressed(straight_cord):
    ph = straight_cord
    image = partial_volume_image(ph, seed=537)
    plain = measure_labels(labels=ph.labels, affine=ph.scan.affine, modality="MR")
    read = measure_labels(labels=ph.labels, affine=ph.scan.affine, modality="MR", image=image)
    by_labels, with_image = plain["cord"]["mscc_pct"], read["cord"]["mscc_pct"]
    assert plain["cord_profile"]["edge"] == "labels" and read["cord_profile"]["edge"] == "image"  # the record says which
    assert ph.truth["cord"]["mscc_pct"] == 0.0
    assert by_labels > 5.0        # the voxel grid's own step (a measured miss of the labels alone)
    assert abs(with_image) <= min(5.0, by_labels - 2.0)  # issue 17: within 5 with the image (2.2 here)


def test_no_shares_where_the_image_does_not_show_the_cord(straight_cord):
    """A CT shows cord and CSF about 30 HU apart, under its noise: the labels alone are used."""
    ph = straight_cord
    cord, sac = ph.labels == L.SPINAL_CORD, ph.labels == L.THECAL_SAC
    flat = np.flatnonzero(cord | sac)
    rng = np.random.default_rng(0)
    ct_like = np.where(cord, 35.0, np.where(sac, 8.0, 40.0)) + rng.normal(0, 12.0, cord.shape)
    assert cord_shares(cord=cord, sac=sac, image=ct_like, flat=flat) is None
    t2 = partial_volume_image(ph, seed=1)
    shares = cord_shares(cord=cord, sac=sac, image=t2, flat=flat)
    assert shares is not None and shares.shape == flat.shape
    assert np.all((shares >= 0) & (shares <= 1))
    assert shares[cord.ravel()[flat]].mean() > 0.9 and shares[~cord.ravel()[flat]].mean() < 0.1
    # the record says when the image cannot check the cord's outline (and not when it can)
    note = "the image does not show the cord apart from the CSF"
    on_ct = measure_labels(labels=ph.labels, affine=ph.scan.affine, modality="CT", image=ct_like.astype(np.float32))
    on_t2 = measure_labels(labels=ph.labels, affine=ph.scan.affine, modality="MR", image=t2)
    assert any(f.startswith(note) for f in on_ct["flags"]), on_ct["flags"]
    assert not any(f.startswith(note) for f in on_t2["flags"])
    assert on_ct["cord"] == measure_labels(labels=ph.labels, affine=ph.scan.affine, modality="CT")["cord"]


def test_a_voxel_without_a_value_keeps_its_label(straight_cord):
    ph = straight_cord
    cord, sac = ph.labels == L.SPINAL_CORD, ph.labels == L.THECAL_SAC
    flat = np.flatnonzero(cord | sac)
    image = partial_volume_image(ph, seed=2)
    image.ravel()[flat[::7]] = np.nan
    shares = cord_shares(cord=cord, sac=sac, image=image, flat=flat)
    assert shares is not None and np.all(np.isfinite(shares))
    assert np.array_equal(shares[::7][np.isin(shares[::7], (0.0, 1.0), invert=True)], [])


def test_a_blurred_image_is_not_trusted(straight_cord):
    """Blurred by 0.8 voxel, the thin CSF ring round the cord holds no pure CSF signal: the shares read the
    cord 29 % small and the uncompressed cord 10 points compressed; the labels are used instead."""
    from scipy import ndimage

    ph = straight_cord
    cord, sac = ph.labels == L.SPINAL_CORD, ph.labels == L.THECAL_SAC
    flat = np.flatnonzero(cord | sac)
    blurred = ndimage.gaussian_filter(partial_volume_image(ph, seed=3), 0.8)
    assert cord_shares(cord=cord, sac=sac, image=blurred, flat=flat) is None
    mild = ndimage.gaussian_filter(partial_volume_image(ph, seed=3), 0.5)
    assert cord_shares(cord=cord, sac=sac, image=mild, flat=flat) is not None


def test_on_a_real_t2star_the_image_reads_the_cord_as_the_manual_mask_does(real_data):
    """gm sub-9418 (axial T2*, 0.5 mm in-plane): the model's cord labels are 9 % smaller in section than
    the manual mask's; read with the image's partial volume the cord's section and MSCC come close to
    the manual mask's (measured 2026-12-03: area 87.1 / 91.1 / 95.7 mm^2, MSCC 10.9 / 5.7 / 5.6 for
    labels / image / manual)."""
    from spinelesion.inference.predictor import Predictor
    from spinelesion.io.load import load_scan

    from spinelesion.inference.settings import InferenceSettings

    scan = load_scan(real_data / "gm_challenge" / "sub-9418_T2starw.nii.gz")
    manual = load_scan(real_data / "gm_challenge" / "sub-9418_T2starw_seg-manual.nii.gz").array > 0.5
    # the network's own outline (not snapped to the image at inference): the measurement alone is tested
    labels = Predictor(device="cpu", settings=InferenceSettings(snap_cord_to_image=False)).predict(scan).labels

    def read(label_map, image):
        record = measure_labels(labels=label_map, affine=scan.affine, modality="MR", image=image)
        return float(np.median(record["cord_profile"]["cord_area_mm2"])), record["cord"]["mscc_pct"]

    by_hand = np.where(manual, L.SPINAL_CORD, np.where(np.isin(labels, (L.SPINAL_CORD, L.THECAL_SAC)),
                                                       L.THECAL_SAC, 0)).astype(np.uint8)
    area_manual, mscc_manual = read(by_hand, None)
    area_labels, mscc_labels = read(labels, None)
    area_image, mscc_image = read(labels, scan.array)
    assert abs(area_image - area_manual) < abs(area_labels - area_manual) - 3.0, (area_labels, area_image, area_manual)
    assert abs(mscc_image - mscc_manual) < abs(mscc_labels - mscc_manual), (mscc_labels, mscc_image, mscc_manual)


def test_the_cord_outline_snaps_to_the_image_edge(straight_cord):
    """A cord drawn a voxel too narrow from side to side (the network's 1.5 mm outline resampled) comes
    back to the image's half-way edge; only cord and sac voxels change; an outline a voxel too thin all
    round (a third of the cord's volume) is too far off to be trusted and stays; a CT-like image changes
    nothing."""
    from scipy import ndimage

    from spinelesion.inference.refine import snap_cord_to_image

    ph = straight_cord
    truth = ph.labels == L.SPINAL_CORD
    image = partial_volume_image(ph, seed=4)
    thin = ph.labels.copy()
    thin[truth & ~(np.roll(truth, 1, 0) & np.roll(truth, -1, 0))] = L.THECAL_SAC

    def dice(a):
        return 2 * (a & truth).sum() / (a.sum() + truth.sum())

    before = dice(thin == L.SPINAL_CORD)
    snapped, changed = snap_cord_to_image(thin.copy(), image=image)
    after = dice(snapped == L.SPINAL_CORD)
    assert changed > 0 and after > max(before + 0.05, 0.9), (before, after)  # measured 0.843 -> 0.934
    eroded = ph.labels.copy()
    eroded[truth & ~ndimage.binary_erosion(truth)] = L.THECAL_SAC
    assert snap_cord_to_image(eroded.copy(), image=image)[1] == 0
    other = ~np.isin(thin, (L.SPINAL_CORD, L.THECAL_SAC))
    assert np.array_equal(snapped[other], thin[other])
    cord, sac = ph.labels == L.SPINAL_CORD, ph.labels == L.THECAL_SAC
    ct_like = np.where(cord, 35.0, np.where(sac, 8.0, 40.0)) + np.random.default_rng(0).normal(0, 12.0, cord.shape)
    same, n = snap_cord_to_image(thin.copy(), image=ct_like)
    assert n == 0 and np.array_equal(same, thin)


def test_on_real_scans_the_snapped_cord_matches_the_manual_mask_better(real_data):
    """gm sub-9418 (axial T2*) and sct_t2 (T2): the shipped model's cord against the manual mask, with the
    outline snapped to the image and without (measured 2026-12-03: 0.865 -> 0.930, 0.935 -> 0.967)."""
    from spinelesion.inference.predictor import Predictor
    from spinelesion.inference.settings import InferenceSettings
    from spinelesion.io.load import load_scan

    for image, mask in (("gm_challenge/sub-9418_T2starw.nii.gz", "gm_challenge/sub-9418_T2starw_seg-manual.nii.gz"),
                        ("sct_t2/t2.nii.gz", "sct_t2/t2_seg-manual.nii.gz")):
        scan = load_scan(real_data / image)
        manual = load_scan(real_data / mask).array > 0.5

        def cord_dice(settings):
            cord = Predictor(device="cpu", settings=settings).predict(scan).labels == L.SPINAL_CORD
            return 2 * (cord & manual).sum() / (cord.sum() + manual.sum())

        snapped, drawn = cord_dice(InferenceSettings()), cord_dice(InferenceSettings(snap_cord_to_image=False))
        assert snapped > drawn + 0.02, (image, drawn, snapped)


def test_a_sac_drawn_into_the_tissue_round_it_is_not_read_as_csf(straight_cord):
    """A network that draws the sac 4 voxels into the fat and bone round it: the "CSF" far from the cord is
    that tissue, the sac's median no longer reads as CSF, and no shares are given (a held-out synthetic T1
    image lost 0.07 cord Dice to such a sac before this check)."""
    from scipy import ndimage

    ph = straight_cord
    cord = ph.labels == L.SPINAL_CORD
    sac = ndimage.binary_dilation(cord | (ph.labels == L.THECAL_SAC), iterations=4) & ~cord
    image = partial_volume_image(ph, seed=5)
    assert cord_shares(cord=cord, sac=sac, image=image, flat=np.flatnonzero(cord | sac)) is None
