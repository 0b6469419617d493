"""Anatomy-aware lesion clean-up (keep_spinal_lesions) and the choice of its thresholds."""

from __future__ import annotations

import numpy as np
import torch

from spinelesion.training.calibrate import choose_operating_point
from spinelesion.inference.postprocess import keep_spinal_lesions
from spinelesion.inference.resample import class_argmax


def _probabilities(labels: np.ndarray, *, lesion_p: float = 0.9) -> torch.Tensor:
    """(7, X, Y, Z) probabilities whose argmax is ``labels``; lesion voxels' second choice is body."""
    probs = np.full((7, *labels.shape), 0.01, np.float32)
    for c in range(7):
        probs[c][labels == c] = 0.94
    lesion = labels == 3
    probs[3][lesion] = lesion_p
    probs[1][lesion] = 1.0 - lesion_p - 0.05
    return torch.as_tensor(probs)


def test_lesions_away_from_the_spine_are_dropped_and_become_their_next_class():
    labels = np.zeros((40, 40, 40), np.uint8)
    labels[5:20, 5:20, 5:20] = 1              # a vertebral body
    labels[8:14, 8:14, 8:14] = 3              # a lesion inside it: kept
    labels[30:36, 30:36, 30:36] = 3           # a "lesion" in the liver, 10 voxels away: dropped
    cleaned, counts = keep_spinal_lesions(_probabilities(labels), spacing_mm=(1.5,) * 3, min_lesion_mm3=10.0)
    out = class_argmax(cleaned).numpy()
    assert counts == {"kept": 1, "outside_spine": 1, "too_small": 0, "low_probability": 0}
    assert np.all(out[8:14, 8:14, 8:14] == 3)
    assert not np.any(out[30:36, 30:36, 30:36] == 3)


def test_minimum_volume_and_probability():
    labels = np.zeros((30, 30, 30), np.uint8)
    labels[2:28, 2:28, 2:28] = 1
    labels[5, 5, 5] = 3                        # one voxel: 3.4 mm3 at 1.5 mm
    labels[15:19, 15:19, 15:19] = 3            # 64 voxels: 216 mm3
    small, counts = keep_spinal_lesions(_probabilities(labels), spacing_mm=(1.5,) * 3, min_lesion_mm3=65.0)
    assert counts["kept"] == 1 and counts["too_small"] == 1
    assert class_argmax(small).numpy()[5, 5, 5] == 1
    unsure, counts = keep_spinal_lesions(_probabilities(labels, lesion_p=0.55), spacing_mm=(1.5,) * 3,
                                         min_lesion_mm3=0.0, lesion_probability=0.8)
    assert counts["low_probability"] == 2 and not np.any(class_argmax(unsure).numpy() == 3)


def test_choice_is_the_most_sensitive_within_the_false_positive_budget():
    rows = [{"min_lesion_mm3": 0.0, "lesion_probability": 0.5, "sensitivity": 0.95, "fp_per_scan": 3.0},
            {"min_lesion_mm3": 65.0, "lesion_probability": 0.5, "sensitivity": 0.9, "fp_per_scan": 0.4},
            {"min_lesion_mm3": 65.0, "lesion_probability": 0.8, "sensitivity": 0.9, "fp_per_scan": 0.2},
            {"min_lesion_mm3": 250.0, "lesion_probability": 0.9, "sensitivity": 0.5, "fp_per_scan": 0.0}]
    assert choose_operating_point(rows, max_fp_per_scan=0.5) == rows[2]
    assert choose_operating_point(rows, max_fp_per_scan=0.0) == rows[3]


def test_without_canal_contact_an_epidural_lesion_must_reach_bone():
    labels = np.zeros((30, 30, 30), np.uint8)
    labels[2:12, 2:28, 2:28] = 1               # body
    labels[16:26, 10:20, 2:28] = 5             # thecal sac, 4 voxels behind the body
    labels[20:24, 12:16, 10:14] = 3            # a "lesion" inside the sac, touching only CSF
    probs = _probabilities(labels)
    _, with_canal = keep_spinal_lesions(probs.clone(), spacing_mm=(1.5,) * 3, min_lesion_mm3=0.0)
    _, bone_only = keep_spinal_lesions(probs.clone(), spacing_mm=(1.5,) * 3, min_lesion_mm3=0.0, touch_canal=False)
    assert with_canal["kept"] == 1 and bone_only["outside_spine"] == 1


def test_volume_lookup_reads_the_voxel_under_each_world_point():
    """Lesion confidence reads the network grid by world position, whatever that grid's affine."""
    from spinelesion.inference.resample import VolumeLookup

    volume = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    angle = np.radians(25)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]) \
        @ np.diag([1.5, 1.5, 2.0])
    affine[:3, 3] = [-10.0, 4.0, 30.0]
    ijk = np.array([[0, 0, 0], [4, 5, 6], [2, 3, 1], [7, 0, 0], [-2, 1, 1]], dtype=float)
    points = (ijk + 0.2) @ affine[:3, :3].T + affine[:3, 3]       # inside the voxel, off its centre
    values = VolumeLookup(volume, affine=affine)(points)
    assert values.tolist() == [volume[0, 0, 0], volume[4, 5, 6], volume[2, 3, 1], 0.0, 0.0]


def test_calibration_counts_equal_cleaning_then_counting():
    """The calibration's one-pass counts equal running the clean-up and counting lesions per setting."""
    from spinelesion.inference.postprocess import keep_spine_structure, lesion_components
    from spinelesion.training.calibrate import _detections
    from spinelesion.training.validation import case_stats

    rng = np.random.default_rng(0)
    labels = np.zeros((48, 40, 40), np.uint8)
    labels[4:44, 6:30, 6:30] = 1                                  # bone
    labels[4:44, 32:36, 16:20] = 4                                # cord
    truth = labels.copy()
    for k, (x, p) in enumerate([(6, 0.95), (14, 0.75), (22, 0.6), (30, 0.9), (38, 0.85)]):
        size = 2 + k % 3
        labels[x:x + size, 10:10 + size, 10:10 + size] = 3            # predicted lesions, some on true ones
        if k % 2 == 0:
            truth[x:x + 3, 10:13, 10:13] = 3
    labels[20:23, 31:34, 17:19] = 3                                # beside the canal only
    probs = _probabilities(labels, lesion_p=0.8)
    lesion = torch.as_tensor(labels == 3)
    probs[3][lesion] = torch.as_tensor(rng.uniform(0.5, 0.99, int(lesion.sum())), dtype=torch.float32)
    probs[1][lesion] = (1.0 - probs[3][lesion]) * 0.9
    probs = keep_spine_structure(probs, spacing_mm=(1.5,) * 3)
    grid = [(size, prob, mean, canal) for size in (0.0, 10.0, 30.0) for prob in (0.5, 0.9)
            for mean in (0.0, 0.75) for canal in (True, False)]
    fast = _detections(lesion_components(probs, spacing_mm=(1.5,) * 3), truth == 3, grid)
    annotated = np.ones(7, bool)
    for key, counts in zip(grid, fast):
        size, prob, mean, canal = key
        cleaned, _ = keep_spinal_lesions(probs.clone(), spacing_mm=(1.5,) * 3, min_lesion_mm3=size,
                                         lesion_probability=prob, mean_probability=mean, touch_canal=canal)
        stats = case_stats(class_argmax(cleaned).numpy(), truth.astype(np.int64), annotated)
        assert counts == (stats["lesions_truth"], stats["lesions_detected"], stats["lesions_false_positive"]), key
    assert len({c for c in fast}) > 3                              # the settings do differ


def test_ct_lesions_as_dense_as_their_marrow_are_dropped():
    """On CT a bone lesion shows by density: a component mostly lytic (100 HU under the marrow around
    it) or blastic (150 over) stays, a mixed one stays, one as dense as the marrow is dropped (its
    voxels become body), and an epidural one (mostly in the canal) is not judged."""
    from spinelesion.inference.resample import VolumeLookup

    labels = np.zeros((60, 40, 40), np.uint8)
    labels[4:56, 4:24, 5:35] = 1                     # vertebral bodies (one slab is enough here)
    labels[4:56, 27:33, 5:35] = 5                    # the thecal sac behind them
    hu = np.where(labels == 1, 250.0, 10.0).astype(np.float32)
    hu[labels == 0] = 40.0
    boxes = {"lytic": (slice(6, 12), slice(8, 14), slice(8, 14)),
             "isodense": (slice(18, 24), slice(8, 14), slice(8, 14)),
             "mixed": (slice(30, 36), slice(8, 14), slice(8, 14)),
             "epidural": (slice(44, 50), slice(25, 33), slice(8, 14))}
    for name, box in boxes.items():
        labels[box] = 3
    hu[boxes["lytic"]] = 60.0
    hu[boxes["isodense"]] = 225.0                    # 25 HU under the marrow: neither lytic nor blastic
    hu[boxes["mixed"]] = np.where(np.indices((6, 6, 6)).sum(axis=0) % 2 == 0, 60.0, 900.0)
    hu[boxes["epidural"]] = 50.0
    affine = np.diag([1.5, 1.5, 1.5, 1.0])

    def clean(hu_volume):
        return keep_spinal_lesions(_probabilities(labels), spacing_mm=(1.5,) * 3, min_lesion_mm3=10.0,
                                   ct_density={"affine": affine, "hu_at": VolumeLookup(hu_volume, affine=affine),
                                               "min_typed_fraction": 0.5})

    cleaned, counts = clean(hu)
    out = class_argmax(cleaned).numpy()
    assert counts["isodense"] == 1 and counts["kept"] == 3
    assert np.all(out[boxes["isodense"]] == 1)
    for name in ("lytic", "mixed", "epidural"):
        assert np.all(out[boxes[name]] == 3), name
    hu[boxes["isodense"]] = 100.0                     # now 150 HU under the marrow: lytic, kept
    _, counts = clean(hu)
    assert counts["isodense"] == 0 and counts["kept"] == 4
