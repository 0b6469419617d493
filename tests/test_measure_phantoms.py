"""Measurement accuracy against phantom truth (issue 4 targets), over varied seeds and orientations.

The phantoms (spinelesion.data.phantoms) carry the record of docs/contracts.md §2 from their generation
parameters. Targets: compression flag right on every case; Bilsky exact on >= 90 % and never
more than one grade off; MSCC within 5 points; destroyed fraction within 5 points; vertebra
count exact; height loss within 5 points.

Single heights are within 1.3 mm of the truth (median 0.11 mm); an endplate within ~2 degrees of
the slice plane is known to one slice only (an information limit of a label map). Height loss is
read as Genant reads it (issue 17, ``body.genant_readings``): the body's own ratios with its
neighbours' posterior heights, a deficit counting only beyond the resolution, so the one-slice
height errors of small bodies no longer turn into false loss: every vertebra is within 5 points
here (``test_height_loss_issue_17_targets``; before issue 17: 63/67, worst 11.9).
"""

from __future__ import annotations

import numpy as np
import pytest

from spinelesion.data import phantoms
from spinelesion.measure import measure_labels

pytestmark = pytest.mark.slow

GRADES = ("0", "1a", "1b", "1c", "2", "3")
CASES = [
    dict(seed=101, bilsky="0", orientation="RAS"),
    dict(seed=102, bilsky="1a", orientation="LPS"),
    dict(seed=103, bilsky="1b", orientation="PSR"),
    dict(seed=104, bilsky="1c", orientation="RAS", oblique=True),
    dict(seed=105, bilsky="2", orientation="LPS"),
    dict(seed=106, bilsky="3", orientation="PSR", oblique=True),
    dict(seed=107, bilsky="2", orientation="RAS", oblique=True),
    dict(seed=108, bilsky="3", orientation="LPS"),
    dict(seed=109, healthy=True, orientation="PSR"),
    dict(seed=110, bilsky="1c", orientation="LPS", oblique=True),
    dict(seed=111, bilsky="2", modality="t2", orientation="PSR"),
    dict(seed=112, bilsky="1b", modality="t1", oblique=True),
]


@pytest.fixture(scope="module")
def made():
    return [(case, phantoms.make_phantom(**case)) for case in CASES]


@pytest.fixture(scope="module")
def results(made):
    out = []
    for case, ph in made:
        record = measure_labels(labels=ph.labels, affine=ph.scan.affine, image=ph.scan.array,
                                modality=ph.scan.modality)
        out.append((case, record, ph.truth))
    return out


def test_vertebra_count_and_flags(results):
    for case, r, t in results:
        assert len(r["vertebrae"]) == len(t["vertebrae"]), case
        assert r["cord"]["compression_flag"] == t["cord"]["compression_flag"], case


def test_bilsky(results):
    pairs = [(r["cord"]["bilsky_grade"], t["cord"]["bilsky_grade"]) for _, r, t in results]
    exact = sum(a == b for a, b in pairs)
    assert exact >= 0.9 * len(pairs), pairs
    for a, b in pairs:
        assert (a is None) == (b is None), pairs
        if a is not None:
            assert abs(GRADES.index(a) - GRADES.index(b)) <= 1, pairs


def test_mscc(results):
    for case, r, t in results:
        assert r["cord"]["mscc_pct"] == pytest.approx(t["cord"]["mscc_pct"], abs=5), case


def test_mcc(results):
    """MCC (dural canal) within 7 points on every case, within 5 on at least 90 % (reached: 12/12 within
    5 here; 39/41 over seeds 101-112, 200-209, 300-319, worst 6.3). The canal's second moment, used
    before the midline extent, read compressed sacs about 10 points low (26/41 within 5)."""
    errors = np.abs([r["cord"]["mcc_pct"] - t["cord"]["mcc_pct"] for _, r, t in results
                     if r["cord"]["mcc_pct"] is not None])
    assert len(errors) >= 10
    assert errors.max() <= 7 and np.mean(errors <= 5) >= 0.9, np.round(errors, 1)


def test_destroyed_fraction(results):
    for case, r, t in results:
        for a, b in zip(r["vertebrae"], t["vertebrae"]):
            assert a["body_destruction_pct"] == pytest.approx(b["body_destruction_pct"], abs=5), (case, b["level"])


def test_posterolateral_involvement(results):
    """SINS posterolateral involvement (none / unilateral / bilateral) right on at least 98 % of the
    vertebrae (reached: 66/67; seeds 200-209 63/63, 300-319 120/122). Reading the canal's width
    from the dural sac where the bony ring is open used to call epidural tumour beside the sac
    posterolateral (64/67 here; 237/252 over the three sets)."""
    pairs = [(a["posterolateral"], b["posterolateral"]) for _, r, t in results
             for a, b in zip(r["vertebrae"], t["vertebrae"])]
    assert sum(x == y for x, y in pairs) >= 0.98 * len(pairs), pairs


def test_lesion_type_on_ct(results):
    """Lytic / blastic / mixed on CT. Where the truth has a single kind it is read right, and a
    vertebra without a bone lesion gets no type but where a neighbour's epidural mass crosses the
    level's boundary by more than a smallest lesion (2 of 34 here; before the volume gate 7).
    Vertebrae with lesions of two kinds (truth "mixed") read mixed only when both kinds make up
    at least 20 % of the lesion voxels (4 of 11 here): a convention, not an error of the phantom
    or the code."""
    pairs = [(b["lesion_type"], a["lesion_type"]) for case, r, t in results if case.get("modality", "ct") == "ct"
             for a, b in zip(r["vertebrae"], t["vertebrae"])]
    assert all(m == t for t, m in pairs if t in ("lytic", "blastic")), pairs
    without = [m for t, m in pairs if t is None]
    assert len(without) >= 30 and sum(m is not None for m in without) <= 2, pairs


def test_merged_vertebra_map_destroyed_fraction(made):
    """The same phantoms with body and posterior elements merged into one class (``--label-map
    vertebra``, as VerSe or SPIDER label vertebrae): split geometrically, the destroyed fraction is
    within 8 points everywhere and within 5 on at least 90 % (reached: 63/67, worst 5.9). With the
    canal's front plane alone, pedicle roots beside a fully lytic body counted as its bone (57/67,
    worst 17.2)."""
    errors = []
    for case, ph in made:
        merged = np.where(np.isin(ph.labels, (1, 2)), 1, ph.labels).astype(np.uint8)
        r = measure_labels(labels=merged, affine=ph.scan.affine, label_map="vertebra")
        assert len(r["vertebrae"]) == len(ph.truth["vertebrae"]), case
        errors += [abs(a["body_destruction_pct"] - b["body_destruction_pct"])
                   for a, b in zip(r["vertebrae"], ph.truth["vertebrae"])]
    errors = np.array(errors)
    assert errors.max() <= 8 and np.mean(errors <= 5) >= 0.9, np.round(errors, 1)


def _height_loss_errors(results):
    return np.abs([a["height_loss_pct"] - b["height_loss_pct"]
                   for _, r, t in results for a, b in zip(r["vertebrae"], t["vertebrae"])])


def test_height_loss(results):
    """Collapsed bodies: Genant within one grade; every vertebra within 12 points, at least 92 %
    within 5, median within 1.0 (the issue's 5 points on every vertebra is not reached, see the
    module docstring). Reached before issue 17: 63/67 within 5, median 0.7, worst 11.8; now 67/67,
    worst 4.4 (test_height_loss_issue_17_targets)."""
    for case, r, t in results:
        for a, b in zip(r["vertebrae"], t["vertebrae"]):
            if b["genant_grade"] >= 1:
                assert abs(a["genant_grade"] - b["genant_grade"]) <= 1, (case, b["level"])
    errors = _height_loss_errors(results)
    assert errors.max() <= 12, np.round(errors, 1)
    assert np.mean(errors <= 5) >= 0.92, np.round(errors, 1)
    assert np.median(errors) <= 1.0, np.round(errors, 1)


def test_heights_within_1p3_mm(results):
    """Anterior, middle and posterior heights within 1.3 mm of the truth on every measured body,
    wedged and biconcave ones included, median within 0.2 mm (reached: 1.26 and 0.11 mm; seeds
    200-209: 1.64 and 0.16 mm)."""
    errors = [abs(a[key] - b[key]) for _, r, t in results for a, b in zip(r["vertebrae"], t["vertebrae"])
              for key in ("height_anterior_mm", "height_middle_mm", "height_posterior_mm")
              if a[key] is not None]
    assert len(errors) >= 3 * 60
    assert max(errors) <= 1.3, np.round(errors, 1)
    assert np.median(errors) <= 0.2, np.round(errors, 1)


def test_height_loss_issue_17_targets(results, made):
    """Issue 17 (Genant's reading: own shape ratios with the neighbours' posterior heights, loss only
    beyond what the label map resolves): every vertebra within max(5 points, one voxel step along
    the column as a percentage of its undeformed height); collapsed vertebrae within 3 points on
    average; fractures (>= 20 %) found with sensitivity and specificity 100 %; no intact vertebra
    given over 5 % of loss here. Reached on these 12 cases: 67/67 within 5 (worst 4.4), collapsed
    mean 1.9. Over ct
    and t2 seeds 200-239 (benchmarks/height_loss.py): 531/532 within the allowance, collapsed
    mean 2.0, 39/40 and 492/492, 5 intact vertebrae over 5 % (thick MR slices); before: 523/532,
    2.6, 39/40 and 492/492, 90 intact vertebrae over 5 %."""
    from spinelesion.measure import geometry as G

    collapsed, fractures = [], []
    for (case, r, t), (_, ph) in zip(results, made):
        step = G.step_along_mm(np.asarray(r["column"]["axis"], float), ph.scan.affine)
        for a, b in zip(r["vertebrae"], t["vertebrae"]):
            if a["height_loss_pct"] is None:
                continue
            error = abs(a["height_loss_pct"] - b["height_loss_pct"])
            assert error <= max(5.0, 100 * step / b["height_undeformed_mm"]), (case, b["level"], a, b)
            if b["collapse_kind"] != "none":
                collapsed.append(error)
            else:
                assert a["height_loss_pct"] <= 5, (case, b["level"])
            fractures.append((a["height_loss_pct"] >= 20, b["height_loss_pct"] >= 20))
    assert collapsed and np.mean(collapsed) <= 3, np.round(collapsed, 1)
    assert all(x == y for x, y in fractures)
