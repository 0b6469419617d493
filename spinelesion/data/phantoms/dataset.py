"""Write phantoms as an MSD-style dataset folder.

Layout::

    OUT/imagesTr/phantom_ct_0000.nii.gz   image (CT int16 HU, MR int16)
    OUT/labelsTr/phantom_ct_0000.nii.gz   label map, schema v1, same grid
    OUT/truth/phantom_ct_0000.json        measurement record (docs/contracts.md section 2)
    OUT/params/phantom_ct_0000.json       drawn parameters (render_phantom rebuilds the case)
    OUT/tissueTr/phantom_ct_0000.nii.gz   tissue classes (spinelesion.synthesis.tissues), with --context
    OUT/dataset.json                      MSD datalist with a train / validation split

With ``context=True`` each entry also names its ``tissue`` map, which the ``tissue`` adapter
trains on (images synthesised on the fly); the rendered image stays for validation.

Every file is written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from spinelesion.errors import ConfigError
from spinelesion.io.atomic import write_text_atomic
from spinelesion.io.save import save_image, save_labels
from spinelesion.io.scan import Scan
from spinelesion.labels import LABEL_NAMES


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` in a dataset made with ``seed`` (independent streams per case)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def case_grade(seed: int, index: int) -> str | None:
    """Bilsky grade of case ``index`` (None: healthy) in a dataset made with ``seed``.

    Cases come in blocks of seven, each a seeded shuffle of the six grades and one healthy case,
    so every grade appears in any 13 consecutive cases (and in any 36 with room to spare)."""
    from spinelesion.data.phantoms.pathology import BILSKY_GRADES

    block = (*BILSKY_GRADES, None)
    order = np.random.default_rng(np.random.SeedSequence([int(seed), index // len(block), 7])).permutation(len(block))
    return block[int(order[index % len(block)])]


def write_case(*, out: Path, index: int, modality: str, seed: int, shape_limit_vox: int, context: bool) -> dict:
    """Make case ``index`` of a dataset made with ``seed`` and write its files under ``out``; return its
    datalist entry."""
    from spinelesion.data.phantoms.phantom import make_phantom

    name = f"phantom_{modality}_{index:04d}"
    grade = case_grade(seed, index)
    ph = make_phantom(seed=case_seed(seed, index), modality=modality, shape_limit_vox=shape_limit_vox,
                      context=context, bilsky=grade, healthy=grade is None)
    write_image(ph.scan, out / "imagesTr" / f"{name}.nii.gz")
    save_labels(ph.labels, like=ph.scan, path=out / "labelsTr" / f"{name}.nii.gz")
    write_text_atomic(out / "truth" / f"{name}.json", json.dumps(ph.truth, indent=1))
    write_text_atomic(out / "params" / f"{name}.json", json.dumps(ph.params))
    entry = {"image": f"imagesTr/{name}.nii.gz", "label": f"labelsTr/{name}.nii.gz", "truth": f"truth/{name}.json"}
    if context:
        save_labels(ph.tissue, like=ph.scan, path=out / "tissueTr" / f"{name}.nii.gz")
        entry["tissue"] = f"tissueTr/{name}.nii.gz"
    return entry


def _write_job(job: dict) -> dict:
    return write_case(**job)


def write_image(scan: Scan, path: str | os.PathLike) -> Path:
    """Write a phantom image as int16 NIfTI (sform and qform set), atomically."""
    return save_image(scan, path=path, dtype=np.int16)


def write_dataset(out_dir: str | os.PathLike, *, n: int, modality: str, seed: int,
                  val_fraction: float = 0.2, progress: bool = True, shape_limit_vox: int = 160,
                  context: bool = False, workers: int = 1) -> Path:
    """Make ``n`` phantoms of ``modality`` ("ct", "t1", "t2") and write them under ``out_dir``.

    Returns the path of ``dataset.json``. The validation split holds round(n * val_fraction) cases
    (at least one when n >= 2 and val_fraction > 0), chosen by ``seed``. ``workers`` > 1 makes the
    cases in that many spawned processes (each case has its own seed: the files are the same).
    """
    from tqdm import tqdm

    from spinelesion.data.phantoms.phantom import MODALITIES

    if modality not in MODALITIES:
        raise ConfigError(f"--modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must lie in [0, 1), got {val_fraction}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    out = Path(out_dir)
    jobs = [dict(out=out, index=i, modality=modality, seed=seed, shape_limit_vox=shape_limit_vox, context=context)
            for i in range(n)]
    bar = dict(total=n, desc=f"phantoms ({modality})", unit="case", disable=not progress)
    if workers == 1:
        entries = [write_case(**job) for job in tqdm(jobs, **bar)]
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(workers, n), mp_context=multiprocessing.get_context("spawn")) as pool:
            entries = list(tqdm(pool.map(_write_job, jobs), **bar))
    n_val = int(round(n * val_fraction))
    if val_fraction > 0 and n >= 2:
        n_val = max(n_val, 1)
    n_val = min(n_val, n - 1)
    order = np.random.default_rng(int(seed)).permutation(n)
    val_idx = set(order[:n_val].tolist())
    datalist = {
        "name": f"spinelesion-phantoms-{modality}",
        "description": "Synthetic spine phantoms with exact labels and measurement truth (no patient data)",
        "reference": "spinelesion.data.phantoms",
        "licence": "CC0-1.0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT" if modality == "ct" else f"MR-{modality.upper()}"},
        "labels": {str(k): v for k, v in LABEL_NAMES.items()},
        "numTraining": n - n_val,
        "numValidation": n_val,
        "seed": int(seed),
        "training": [e for i, e in enumerate(entries) if i not in val_idx],
        "validation": [e for i, e in enumerate(entries) if i in val_idx],
    }
    path = out / "dataset.json"
    write_text_atomic(path, json.dumps(datalist, indent=1))
    return path
