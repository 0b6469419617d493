"""The shipped default models segment held-out phantoms (seeds never used in training).

Thresholds sit well under what the models measured (docs: spinelesion/models/MODEL_CARD.md)
so that a broken preprocessing chain, a wrong checkpoint or a geometry bug fails here.
"""

from __future__ import annotations

import numpy as np
import pytest

from spinelesion.data.phantoms import make_phantom
from spinelesion.evaluation import segmentation_metrics
from spinelesion.inference.predictor import DEFAULT_MODEL_DIR, Predictor, model_paths


def test_default_models_cover_ct_and_mr():
    paths = model_paths(None)
    assert set(paths) == {"CT", "MR"}
    assert all(p.parent == DEFAULT_MODEL_DIR and p.stat().st_size < 25e6 for p in paths.values())


@pytest.mark.slow
@pytest.mark.parametrize("modality,seed", [("ct", 424242), ("t2", 434343), ("t1", 454545)])
def test_default_model_segments_a_held_out_phantom(modality, seed):
    phantom = make_phantom(seed=seed, modality=modality, oblique=True)
    prediction = Predictor(device="cpu").predict(phantom.scan)
    assert prediction.labels.shape == phantom.labels.shape
    per_class = segmentation_metrics(pred_classes=prediction.labels, ref_classes=phantom.labels,
                                     spacing_mm=phantom.scan.spacing_mm)
    dice = {name: m["dice"] for name, m in per_class.items() if m["dice"] is not None}
    assert dice["vertebral_body"] > 0.8, per_class
    assert dice["spinal_cord"] > 0.7, per_class
    assert np.mean(list(dice.values())) > 0.7, per_class
    # labels must sit where the anatomy is: the body centroid within 3 mm of the truth
    body_pred = np.argwhere(prediction.labels == 1).mean(axis=0)
    body_true = np.argwhere(phantom.labels == 1).mean(axis=0)
    offset_mm = np.linalg.norm(phantom.scan.affine[:3, :3] @ (body_pred - body_true))
    assert offset_mm < 3.0
