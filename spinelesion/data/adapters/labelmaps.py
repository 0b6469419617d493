"""Folders of label maps without images: real anatomy for training on synthesised images.

Any folder of label maps (NIfTI, MHA, NRRD; e.g. a user's own TotalSegmentator or VerSe outputs,
or ``../shared/data/anatomy``) becomes training data: each map is turned into schema v1 labels and
a tissue map (:mod:`spinelesion.synthesis.tissues`), and the training step synthesises a new image
from the tissue map every time. A JSON description names what each value is::

    {"name": "spine-generic cord and CSF", "licence": "MIT",
     "values": {"1": "spinal_cord", "2": "thecal_sac", "6": "lung"}}

A value's name is a schema class (``vertebral_body``, ``posterior_elements``, ``lesion``,
``spinal_cord``, ``thecal_sac``, ``disc``), ``vertebra`` (one whole vertebra per value, split
into body and posterior elements geometrically: :mod:`.vertebra_split`), ``canal`` (canal contents
without a cord/sac distinction: CSF tissue, the sac left unannotated) or a tissue name (context:
bone that is not spine, organs, air; label 0). ``"mapping": "totalsegmentator"`` describes
TotalSegmentator 'total' maps (vertebrae 26-50, cord 79; other structures become soft tissue).
Only the schema classes a description names are annotated (and "lesion" where bone is: the maps
are taken as healthy, so the only lesions are those training inserts); the loss ignores the others
(``loss.mask_unannotated``). Unlabelled background is split into soft tissue, fat and muscle by
a smooth random field, seeded by the case. Vertebral bone gets a one-voxel cortex shell around
marrow; discs an annulus around a nucleus.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
from scipy import ndimage

from spinelesion import labels as L
from spinelesion.data.adapters.base import Case, read_label_volume, require_root
from spinelesion.errors import DatasetError, LabelMapError
from spinelesion.io.scan import Scan
from spinelesion.synthesis.tissues import ID, TISSUES

SUFFIXES = (".nii.gz", ".nii", ".mha", ".nrrd")
_SCHEMA = {name: value for value, name in L.LABEL_NAMES.items() if value}
_TOTALSEG_VERTEBRAE = range(26, 51)
_TOTALSEG_CORD = 79


def load_description(path: str | Path) -> dict:
    """Read and check a label-map description (see the module docstring); DatasetError if unusable."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: not a readable label-map description ({err})") from None
    if raw.get("mapping") == "totalsegmentator":
        values = {str(v): "vertebra" for v in _TOTALSEG_VERTEBRAE} | {str(_TOTALSEG_CORD): "spinal_cord"}
        return {**raw, "values": values, "other": "soft"}
    values = raw.get("values")
    if not isinstance(values, dict) or not values:
        raise DatasetError(f"{path}: needs 'values' (label value -> structure name) or 'mapping'")
    known = set(_SCHEMA) | {"vertebra", "canal"} | set(TISSUES)
    for key, name in values.items():
        if not str(key).isdigit() or int(key) == 0:
            raise DatasetError(f"{path}: label value {key!r} must be a positive integer")
        if name not in known:
            raise DatasetError(f"{path}: value {key}: unknown structure {name!r}; use a schema class, "
                               f"'vertebra', 'canal' or a tissue ({', '.join(TISSUES)})")
    return raw


def annotated_classes(description: dict) -> tuple[int, ...]:
    """Schema classes a description annotates (background always)."""
    names = set(description["values"].values())
    classes = {L.BACKGROUND} | {_SCHEMA[n] for n in names if n in _SCHEMA}
    if "vertebra" in names:
        classes |= {L.VERTEBRAL_BODY, L.POSTERIOR_ELEMENTS}
    if classes & {L.VERTEBRAL_BODY, L.POSTERIOR_ELEMENTS}:
        classes.add(L.LESION)   # the maps are taken as healthy: the only lesions are those training inserts
    return tuple(sorted(classes))


class LabelMapsAdapter:
    name = "labelmaps"
    annotated_classes: tuple[int, ...] = tuple(L.LABEL_NAMES)

    def find_cases(self, root: Path, *, description: str | Path | None = None) -> list[Case]:
        """Every label map under ``root``; ``description`` defaults to ``root/labelmaps.json``."""
        root = require_root(Path(root), dataset="label-map")
        desc_path = Path(description) if description is not None else root / "labelmaps.json"
        if not desc_path.is_file():
            raise DatasetError(f"{desc_path}: label-map description not found (say what each value is; "
                               f"see spinelesion/data/adapters/labelmaps.py)")
        desc = load_description(desc_path)
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))
        if not files:
            raise DatasetError(f"{root}: no label maps ({', '.join(SUFFIXES)})")
        classes = annotated_classes(desc)
        return [Case(case_id=_stem(p), image=p, label=p, dataset=self.name, annotated_classes=classes,
                     label_map=str(desc_path.resolve())) for p in files]

    def load_labels(self, case: Case, *, like: Scan) -> np.ndarray:
        """(X, Y, Z) uint8 schema v1 labels of the map (vertebrae split, context as 0)."""
        raw = read_label_volume(case.label, like=like)
        return structures(raw, description=load_description(case.label_map), affine=like.affine,
                          path=case.label)[0]

    def to_tissue(self, raw: np.ndarray, *, labels: np.ndarray, case: Case, spacing_mm) -> np.ndarray:
        """(X, Y, Z) uint8 tissue map for the raw map ``raw`` whose schema labels are ``labels``."""
        desc = load_description(case.label_map)
        _, context = structures(np.rint(raw).astype(np.int32), description=desc, affine=None, path=case.label,
                                split=False)
        return tissue_map(labels, context=context, seed=zlib.crc32(case.case_id.encode()))


def structures(raw: np.ndarray, *, description: dict, affine, path, split: bool = True
               ) -> tuple[np.ndarray, np.ndarray]:
    """(schema labels (X, Y, Z) uint8, context tissue (X, Y, Z) uint8, 255 where none) of a raw map."""
    values = {int(k): v for k, v in description["values"].items()}
    other = description.get("other")
    present = [int(v) for v in np.unique(raw) if v]
    unknown = [v for v in present if v not in values and other is None]
    if unknown:
        raise LabelMapError(f"{path}: label values {unknown[:10]} are not in the description")
    labels = np.zeros(raw.shape, np.uint8)
    context = np.full(raw.shape, 255, np.uint8)
    vertebrae = np.zeros(raw.shape, np.int32)
    for v in present:
        name = values.get(v, other)
        mask = raw == v
        if name in _SCHEMA:
            labels[mask] = _SCHEMA[name]
        elif name == "vertebra":
            vertebrae[mask] = v
        elif name == "canal":
            context[mask] = ID["csf"]
        else:
            context[mask] = ID[name]
    if vertebrae.any():
        if split:
            from spinelesion.data.adapters.vertebra_split import split_vertebrae

            parts = split_vertebrae(vertebrae, affine=affine)
            labels[parts > 0] = parts[parts > 0]
        else:
            labels[vertebrae > 0] = L.VERTEBRAL_BODY    # bone either way; only the tissue is wanted here
    return labels, context


def tissue_map(labels: np.ndarray, *, context: np.ndarray, seed: int) -> np.ndarray:
    """Tissue classes from schema labels and context tissue (255 = none), background split randomly."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal(tuple(max(2, n // 12) for n in labels.shape))
    field = ndimage.zoom(coarse, [n / c for n, c in zip(labels.shape, coarse.shape)], order=1)[
        : labels.shape[0], : labels.shape[1], : labels.shape[2]]
    out = np.where(field > 0.6, ID["fat"], np.where(field < -0.6, ID["muscle"], ID["soft"])).astype(np.uint8)
    out[context != 255] = context[context != 255]
    bone = np.isin(labels, (L.VERTEBRAL_BODY, L.POSTERIOR_ELEMENTS))
    out[bone] = ID["cortex"]
    out[ndimage.binary_erosion(bone)] = ID["marrow"]
    disc = labels == L.DISC
    out[disc] = ID["annulus"]
    out[ndimage.binary_erosion(disc, iterations=2)] = ID["nucleus"]
    out[labels == L.SPINAL_CORD] = ID["cord"]
    out[labels == L.THECAL_SAC] = ID["csf"]
    out[labels == L.LESION] = ID["lytic"]
    return out


def _stem(path: Path) -> str:
    for suffix in SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem
