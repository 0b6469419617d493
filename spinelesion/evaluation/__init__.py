"""Evaluation of label maps and measurements against references (``spinelesion evaluate``).

Modules, one job each:

- ``cases``: find predicted and reference cases, pair them by name, load them onto one grid;
- ``metrics``: per case and class Dice, normalised surface Dice, HD95, volume error (MONAI);
- ``lesions``: lesion instances (cc3d), one-to-one matching, size bins, FROC;
- ``vertebrae``: per-level vertebra detection and identification;
- ``measurements``: measurement records against truth (bias, limits of agreement, MAE, kappa);
- ``bootstrap``: seeded percentile bootstrap confidence intervals over cases;
- ``summary``: pooling per-case results into the summary figures;
- ``report``: cases.csv, lesions.csv, summary.json, evaluation.html and its plots;
- ``pipeline``: :func:`evaluate_folders`, the whole command.

Definitions: docs/evaluation.md.
"""

from spinelesion.evaluation.metrics import SCORABLE_CLASSES, overlap_metrics, segmentation_metrics
from spinelesion.evaluation.pipeline import evaluate_folders

__all__ = ["evaluate_folders", "overlap_metrics", "segmentation_metrics", "SCORABLE_CLASSES"]
