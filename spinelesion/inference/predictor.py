"""``Predictor``: a trained checkpoint -> label map on the input scan's exact grid."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spinelesion.errors import CheckpointError
from spinelesion.inference.settings import InferenceSettings
from spinelesion.io.scan import Scan
from spinelesion.labels import LESION
from spinelesion.runtime import resolve_device

if TYPE_CHECKING:
    import torch

#: Shipped default model, one for every modality (synthesis-trained; see spinelesion/models/MODEL_CARD.md).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models"


@dataclass(kw_only=True)
class Prediction:
    """Labels (X, Y, Z) uint8 schema v1 on the input grid; optional (C, X, Y, Z) float16 probabilities;
    ``lesion_probability`` reads the network's lesion probability at world points (lesion confidence),
    ``lesion_probability_sd`` its standard deviation over the mirror passes of test-time augmentation."""

    labels: np.ndarray
    probabilities: np.ndarray | None = None
    lesion_probability: Callable[[np.ndarray], np.ndarray] | None = None
    lesion_probability_sd: Callable[[np.ndarray], np.ndarray] | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    model: str = ""


def model_paths(model: str | Path | None) -> dict[str, Path]:
    """Checkpoints by modality ("CT", "MR", or "*" for any) from a file, a folder, or the default.

    A folder holds ``*.safetensors`` files; each one's metadata names its modality.
    """
    path = Path(model) if model is not None else DEFAULT_MODEL_DIR
    if not path.exists():
        raise CheckpointError(f"{path}: model checkpoint not found")
    if path.is_file():
        return {"*": path}
    found: dict[str, Path] = {}
    for ckpt in sorted(path.glob("*.safetensors")):
        modality = checkpoint_meta(ckpt)["preprocessing"]["modality"]
        found.setdefault(modality, ckpt)
    if not found:
        raise CheckpointError(f"{path}: no .safetensors checkpoint in this folder")
    return found


def is_demonstration_model(path: Path) -> bool:
    """True for the checkpoints shipped in ``spinelesion/models`` (see its MODEL_CARD.md): runs that use
    them carry the warning of :data:`spinelesion.report.html.DEMONSTRATION_WARNING`."""
    return Path(path).resolve().parent == DEFAULT_MODEL_DIR


def mirror_axes(meta: dict) -> tuple[int, ...]:
    """The axes (0, 1, 2 of the RAS-ordered preprocessed image) a checkpoint was trained mirrored
    along (its training ``augment.flip_axes``; (0,), left-right, the training default, where the
    metadata does not say): the only mirror images test-time augmentation may show it. A network
    never shown the column upside down or back to front is not made better by seeing it so."""
    augment = ((meta.get("config") or {}).get("augment") or {})
    return tuple(int(a) for a in augment.get("flip_axes", (0,)))


def checkpoint_meta(path: Path) -> dict:
    """The metadata of a spinelesion ``.safetensors`` checkpoint, read without loading weights."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {})["spinelesion"])
    except (OSError, KeyError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: not a spinelesion checkpoint ({type(err).__name__}: {err})") from None


class Predictor:
    """Segment scans with a checkpoint; each network loads once and serves every scan of its modality.

    Sliding-window inference with Gaussian blending (MONAI), AMP on CUDA, optional mirror
    test-time augmentation, preprocessing taken from the checkpoint's metadata, and the result
    resampled (trilinear on probabilities, then argmax) onto the input's exact grid and affine.
    Foreground islands farther than ``settings.spine_margin_mm`` from the column are removed first
    (:func:`~spinelesion.inference.postprocess.keep_spine_structure`; None keeps everything, the
    steps below included), then lesions a spine lesion cannot be, then the output is refined by
    anatomy (:mod:`spinelesion.inference.refine`: canal fill; on CT, posterior elements into their bone).
    ``settings``: :class:`~spinelesion.inference.settings.InferenceSettings` (defaults if None).
    """

    def __init__(self, *, model: str | Path | None = None, device: str = "auto",
                 settings: InferenceSettings | None = None, keep_probabilities: bool = False) -> None:
        self.paths = model_paths(model)
        self.device = resolve_device(device)
        self.settings = settings or InferenceSettings()
        self.keep_probabilities = keep_probabilities
        self._loaded: dict[Path, tuple[object, dict]] = {}

    def checkpoint_for(self, modality: str | None) -> Path:
        if "*" in self.paths:
            return self.paths["*"]
        if modality in self.paths:
            return self.paths[modality]
        if "any" in self.paths:      # one model for every modality (synthesis-trained)
            return self.paths["any"]
        raise CheckpointError(f"no model for modality {modality!r}; available: {sorted(self.paths)}")

    def network(self, path: Path):
        """(torch module in eval mode on self.device, checkpoint metadata); loaded once."""
        if path not in self._loaded:
            from spinelesion.network.checkpoint import build_from_checkpoint

            net, meta = build_from_checkpoint(path, device=self.device)
            net.eval()
            self._loaded[path] = (net, meta)
        return self._loaded[path]

    def predict(self, scan: Scan) -> Prediction:
        """Label map for ``scan`` on its own grid; ``seconds`` splits preprocess/network/postprocess."""

        from spinelesion.inference.resample import VolumeLookup, class_argmax, labels_on_grid
        from spinelesion.network.transforms import preprocess

        path = self.checkpoint_for(scan.modality)
        net, meta = self.network(path)
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        image, net_affine = preprocess(scan, preprocessing=meta["preprocessing"])
        t1 = time.perf_counter()
        seconds["preprocess"] = t1 - t0
        probabilities, lesion_sd = self.sliding_window(net, image, patch_size=meta["patch_size"], with_spread=True,
                                                       mirror_axes=mirror_axes(meta))
        t2 = time.perf_counter()
        seconds["network"] = t2 - t1
        classes = class_argmax(probabilities)  # one arg-max, kept up to date by the clean-up steps
        if self.settings.spine_margin_mm is not None:
            from spinelesion.inference.postprocess import keep_spinal_lesions, keep_spine_structure
            from spinelesion.inference.refine import fill_canal, grow_into_bone

            spacing = meta["preprocessing"]["spacing_mm"]
            hu_at = VolumeLookup(scan.array, affine=scan.affine) if scan.modality == "CT" else None  # CT in HU
            probabilities = keep_spine_structure(probabilities, spacing_mm=spacing,
                                                 margin_mm=self.settings.spine_margin_mm, classes=classes)
            post = meta.get("postprocess")
            if post is not None:   # checkpoints from before the lesion clean-up keep their behaviour
                ct_density = None
                if hu_at is not None and self.settings.ct_lesion_min_typed_fraction is not None:
                    ct_density = {"affine": net_affine, "hu_at": hu_at,
                                  "min_typed_fraction": self.settings.ct_lesion_min_typed_fraction}
                probabilities, _ = keep_spinal_lesions(
                    probabilities, spacing_mm=spacing, min_lesion_mm3=float(post["min_lesion_mm3"]),
                    lesion_probability=float(post["lesion_probability"]),
                    mean_probability=float(post.get("mean_probability", 0.0)),
                    touch_canal=bool(post.get("touch_canal", True)), ct_density=ct_density, classes=classes)
            density = self.settings.ct_lytic_min_core_mm3 is not None or self.settings.ct_sclerotic_bodies
            if hu_at is not None and density:
                from spinelesion.inference.ct_density import add_density_lesions

                probabilities, _ = add_density_lesions(probabilities, classes=classes, affine=net_affine, hu_at=hu_at,
                                                       min_core_mm3=self.settings.ct_lytic_min_core_mm3,
                                                       sclerotic_bodies=self.settings.ct_sclerotic_bodies)
            t1_cores, t1_share = self.settings.t1_marrow_min_core_mm3, self.settings.t1_lesion_min_dark_share
            if scan.modality != "CT" and (t1_cores is not None or t1_share is not None):
                from spinelesion.inference.t1_marrow import t1_disc_sign

                probabilities, _, _ = t1_disc_sign(probabilities, classes=classes, affine=net_affine,
                                                   signal_at=VolumeLookup(scan.array, affine=scan.affine),
                                                   min_core_mm3=t1_cores, min_dark_share=t1_share)
            if self.settings.canal_max_off_line_mm is not None:  # after the lesions' clean-up: lesions stay
                from spinelesion.inference.canal_line import keep_canal_in_line

                probabilities, _ = keep_canal_in_line(probabilities, classes=classes, affine=net_affine,
                                                      max_off_line_mm=self.settings.canal_max_off_line_mm)
            if self.settings.canal_fill_min_probability is not None:
                probabilities, _ = fill_canal(probabilities, spacing_mm=spacing, classes=classes,
                                              min_canal_probability=self.settings.canal_fill_min_probability)
            if hu_at is not None and self.settings.ct_bone_reach_mm:
                probabilities, _ = grow_into_bone(probabilities, classes=classes, affine=net_affine, hu_at=hu_at,
                                                  reach_mm=self.settings.ct_bone_reach_mm)
        labels = labels_on_grid(probabilities, source_affine=net_affine, target_affine=scan.affine,
                                target_shape=scan.shape, classes=classes)
        if self.settings.spine_margin_mm is not None and self.settings.snap_cord_to_image and scan.modality != "CT":
            from spinelesion.inference.refine import snap_cord_to_image

            labels, _ = snap_cord_to_image(labels, image=scan.array)
        kept = None
        if self.keep_probabilities:
            kept = _probabilities_on_grid(probabilities, source_affine=net_affine, scan=scan)
        # on the network grid (a small copy), not a pass over the input grid's labels to see if any is lesion
        lesion_probability = VolumeLookup(probabilities[LESION].half().cpu().numpy(), affine=net_affine)
        lesion_probability_sd = None
        if lesion_sd is not None:
            lesion_probability_sd = VolumeLookup(lesion_sd.half().cpu().numpy(), affine=net_affine)
        seconds["postprocess"] = time.perf_counter() - t2
        return Prediction(labels=labels, probabilities=kept, lesion_probability=lesion_probability,
                          lesion_probability_sd=lesion_probability_sd, seconds=seconds, model=path.name)

    def sliding_window(self, net, image, *, patch_size, with_spread: bool = False,
                       mirror_axes: tuple[int, ...] = (0,)) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """(C, X, Y, Z) softmax probabilities for a (1, X, Y, Z) preprocessed image (the mean over the
        image and its mirror images along each of ``mirror_axes`` with ``settings.tta``: the axes the
        network was trained mirrored along, :func:`mirror_axes`). ``with_spread``: also return the
        (X, Y, Z) standard deviation of the lesion probability over those passes (None without TTA),
        as a pair."""
        import torch
        from monai.inferers import SlidingWindowInferer

        inferer = SlidingWindowInferer(roi_size=tuple(patch_size), sw_batch_size=self.settings.sw_batch_size,
                                       overlap=self.settings.overlap, mode="gaussian", padding_mode=self.settings.padding)
        x = image[None].to(self.device)
        flips = [()] + ([(2 + axis,) for axis in mirror_axes] if self.settings.tta else [])
        use_amp = self.settings.amp and self.device.startswith("cuda")
        total = squares = None
        with torch.inference_mode(), torch.autocast(device_type="cuda", enabled=use_amp):
            for dims in flips:
                xi = torch.flip(x, dims) if dims else x
                logits = inferer(xi, net)
                prob = torch.softmax(logits.float(), dim=1)
                prob = torch.flip(prob, dims) if dims else prob
                total = prob if total is None else total + prob
                if with_spread and len(flips) > 1:
                    lesion = prob[0, LESION] ** 2
                    squares = lesion if squares is None else squares + lesion
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()  # so the per-stage timings split where the work really ends
        mean = (total / len(flips))[0]
        if not with_spread:
            return mean
        spread = None
        if squares is not None:
            spread = (squares / len(flips) - mean[LESION] ** 2).clamp(min=0.0).sqrt()
        return mean, spread


def _probabilities_on_grid(probabilities, *, source_affine: np.ndarray, scan: Scan) -> np.ndarray:
    """(C, X, Y, Z) float16 probabilities resampled onto the scan grid (for --save-probabilities),
    by the labels' rule (see :func:`spinelesion.inference.resample.probabilities_on_grid`)."""
    from spinelesion.inference.resample import probabilities_on_grid

    return probabilities_on_grid(probabilities, source_affine=source_affine, target_affine=scan.affine,
                                 target_shape=scan.shape)
