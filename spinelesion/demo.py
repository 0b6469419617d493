"""The demo: make a few CT and MR phantoms, run the default model on them, write the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from spinelesion.io.atomic import write_text_atomic


def run_demo(*, out_dir: str | Path, n_ct: int = 2, n_mr: int = 2, seed: int = 2026, device: str = "auto") -> Path:
    """Write phantoms to ``out_dir/inputs`` (with their truth in ``out_dir/truth``), run
    inference into ``out_dir/results`` and return the path of ``results/report.html``, where each
    phantom's measurements stand beside its truth."""
    from spinelesion.data.phantoms import make_phantom
    from spinelesion.pipeline.batch import run_batch
    from spinelesion.io.save import save_image, save_labels

    out_dir = Path(out_dir)
    inputs, truth_dir = out_dir / "inputs", out_dir / "truth"
    plan = [("ct", i) for i in range(n_ct)] + [("t1" if i % 2 == 0 else "t2", i) for i in range(n_mr)]
    for n, (modality, i) in enumerate(plan):
        case = f"demo_{modality}_{i:02d}"
        image_path = inputs / f"{case}.nii.gz"
        if image_path.exists():
            continue
        phantom = make_phantom(seed=seed + n, modality=modality)
        save_labels(phantom.labels, like=phantom.scan, path=truth_dir / f"{case}_labels.nii.gz")
        write_text_atomic(truth_dir / f"{case}.json", json.dumps(phantom.truth, indent=2))
        save_image(phantom.scan, path=image_path, dtype=np.int16)
    result = run_batch(input_path=inputs, out_dir=out_dir / "results", device=device, truth_dir=truth_dir)
    return result.report
