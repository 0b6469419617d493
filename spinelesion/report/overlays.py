"""Overlay PNGs for review: curved sagittal and coronal views of the column and axial views at
flagged vertebrae and at the worst cord slice, classes filled and outlined, levels named.

Display: radiological convention (patient's right on the viewer's left, anterior on the left in
sagittal views, head up, anterior up in axial views), orientation letters on every edge, a scale
bar, pixels drawn in millimetres so anisotropic voxels keep their true aspect. CT is shown in a
bone window (W 1800 / L 400 HU); MR (or unknown modality) from its 1st to 99th intensity percentile.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spinelesion.errors import LabelMapError
from spinelesion.io.atomic import atomic_path
from spinelesion.io.scan import Scan
from spinelesion.labels import LABEL_COLOURS, LABEL_NAMES, LESION
from spinelesion.record_types import MeasurementRecord
from spinelesion.report.tables import flagged_vertebra_indices
from spinelesion.report.views import View, axial_view, curved_view, to_canonical

CT_WINDOW_HU = (1800.0, 400.0)  # (width, level): bone window
MR_PERCENTILES = (1.0, 99.0)
FILL_ALPHA = 0.28
DPI = 100
CURVED_MAX_PX = (560, 820)   # (width, height) of the image area
AXIAL_MAX_PX = (440, 440)
LEGEND_PX = 170
TITLE_PX = 28
MARGIN_PX = 18  # black frame around the image holding the orientation letters


def display_window(scan: Scan) -> tuple[float, float]:
    """(vmin, vmax) grey-level range: CT bone window, else the 1st-99th percentile of the voxels."""
    if scan.modality == "CT":
        width, level = CT_WINDOW_HU
        return level - width / 2, level + width / 2
    array = scan.array
    step = max(1, int(round((array.size / 2e6) ** (1 / 3))))
    lo, hi = np.percentile(array[::step, ::step, ::step], MR_PERCENTILES)
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def window_text(scan: Scan) -> str:
    if scan.modality == "CT":
        return f"CT window W {CT_WINDOW_HU[0]:g} / L {CT_WINDOW_HU[1]:g} HU"
    return f"{scan.modality or 'scan'}: grey {MR_PERCENTILES[0]:g}-{MR_PERCENTILES[1]:g} percentile"


def _fmt(value, unit: str = "", digits: int = 0) -> str:
    return "n/a" if value is None else f"{float(value):.{digits}f}{unit}"


def build_views(*, scan: Scan, labels: np.ndarray, record: MeasurementRecord | None) -> list[View]:
    """The views ``write_overlays`` draws: sagittal, coronal, axial_v<index>..., axial_cord (without a
    record, where the measurements failed: the label map alone, sagittal and coronal)."""
    canon = to_canonical(array=scan.array, labels=labels, affine=scan.affine)
    flagged = set(flagged_vertebra_indices(record)) if record is not None else set()
    views = [curved_view(canon, name=name, record=record, flagged=flagged)
             for name in ("sagittal", "coronal")]
    if record is None:
        return views
    for vertebra in record.vertebrae:
        if vertebra.index not in flagged:
            continue
        title = (f"Axial at {vertebra.short_name} (vertebra {vertebra.index}): destruction "
                 f"{_fmt(vertebra.body_destruction_pct, ' %')}, height loss "
                 f"{_fmt(vertebra.height_loss_pct, ' %')}")
        view = axial_view(canon, name=f"axial_v{vertebra.index}", title=title,
                          centre_mm=vertebra.centroid_mm, half_width_mm=55.0,
                          anterior_mm=45.0, posterior_mm=75.0)
        if view is not None:
            views.append(view)
    cord = record.cord
    if cord.worst_centroid_mm is not None:
        grade = cord.bilsky_grade if cord.bilsky_grade is not None else "n/a"
        title = f"Axial at worst cord compression: MSCC {_fmt(cord.mscc_pct, ' %')}, Bilsky {grade}"
        if any(f.kind == "cauda_equina_compression" for f in record.findings):
            title = (f"Axial at cauda equina compression (below the conus): sac narrowed {_fmt(cord.mcc_pct, ' %')}, "
                     f"Bilsky {grade}")
        view = axial_view(canon, name="axial_cord", title=title, centre_mm=cord.worst_centroid_mm,
                          half_width_mm=40.0, anterior_mm=50.0, posterior_mm=35.0)
        if view is not None:
            views.append(view)
    return views


def write_overlays(*, scan: Scan, labels: np.ndarray, record: MeasurementRecord | None, out_dir: Path) -> list[Path]:
    """Draw the review overlays of one scan as PNG files in ``out_dir`` (written atomically).

    Args:
        scan: the scan, any orientation (reordered to the closest RAS axes for display).
        labels: (X, Y, Z) integer label map (schema v1) on ``scan``'s grid.
        record: its typed measurement record (None: the labels alone): vertebra centroids and levels name
            the vertebrae, flagged vertebrae get axial views, ``cord.worst_centroid_mm`` the cord view.
        out_dir: folder for ``sagittal.png``, ``coronal.png``, ``axial_v<index>.png``, ``axial_cord.png``.

    Returns:
        The written paths in that order.
    """
    labels = np.asarray(labels)
    if labels.shape != scan.shape:
        raise LabelMapError(f"label map shape {labels.shape} does not match the scan's {scan.shape}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    window = display_window(scan)
    note = window_text(scan)
    paths = []
    for view in build_views(scan=scan, labels=labels, record=record):
        path = out_dir / f"{view.name}.png"
        _render(view, window=window, note=note, path=path)
        paths.append(path)
    return paths


def _label_lut() -> tuple[np.ndarray, np.ndarray]:
    """(256, 4) RGBA fill colours per label value and (256, 3) outline colours, 0..1."""
    fill = np.zeros((256, 4))
    line = np.zeros((256, 3))
    for value, rgb in LABEL_COLOURS.items():
        if value == 0:
            continue
        colour = np.array(rgb) / 255.0
        line[value] = colour
        fill[value] = (*colour, 0.45 if value == LESION else FILL_ALPHA)
    return fill, line


def _outlined(text_kwargs: dict) -> dict:
    import matplotlib.patheffects as pe

    return {**text_kwargs, "path_effects": [pe.withStroke(linewidth=2.5, foreground="black")]}


def _render(view: View, *, window: tuple[float, float], note: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    h0, h1, v0, v1 = view.extent_mm()
    width_mm, height_mm = h1 - h0, v1 - v0
    max_w, max_h = CURVED_MAX_PX if view.name in ("sagittal", "coronal") else AXIAL_MAX_PX
    px_per_mm = min(max_w / width_mm, max_h / height_mm)
    image_w, image_h = width_mm * px_per_mm, height_mm * px_per_mm
    fig_w = image_w + 2 * MARGIN_PX + LEGEND_PX
    fig_h = max(image_h + 2 * MARGIN_PX, 300) + TITLE_PX
    fig = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI, facecolor="black")
    FigureCanvasAgg(fig)
    box = (MARGIN_PX / fig_w, (fig_h - TITLE_PX - MARGIN_PX - image_h) / fig_h, image_w / fig_w,
           image_h / fig_h)
    ax = fig.add_axes(box)
    ax.set_axis_off()

    ax.imshow(view.image.T, cmap="gray", vmin=window[0], vmax=window[1], origin="lower",
              extent=(h0, h1, v0, v1), interpolation="bilinear", aspect="equal")
    labels = np.clip(view.labels.astype(np.int64), 0, 255)
    fill, line = _label_lut()
    ax.imshow(fill[labels.T], origin="lower", extent=(h0, h1, v0, v1), interpolation="nearest",
              aspect="equal")
    present = [int(v) for v in np.unique(labels) if int(v) in LABEL_NAMES and v != 0]
    (sh, sv), (i0, j0) = view.spacing_mm, view.origin_index
    if min(labels.shape) >= 2:
        hc, vc = (i0 + np.arange(labels.shape[0])) * sh, (j0 + np.arange(labels.shape[1])) * sv
        for value in present:
            ax.contour(hc, vc, (labels == value).T.astype(np.float32), levels=[0.5],
                       colors=[tuple(line[value])], linewidths=2.0 if value == LESION else 1.0)
    ax.set_xlim((h1, h0) if view.flip_h else (h0, h1))
    ax.set_ylim(v0, v1)

    for mark in view.marks:
        ax.text(*mark.text_at, mark.text, ha="center", va="center", clip_on=True,
                **_outlined({"color": "#ff5050" if mark.emphasis else "white", "fontsize": 9,
                             "fontweight": "bold" if mark.emphasis else "normal"}))
    letter = {"color": "#7fd7ff", "fontsize": 11, "fontweight": "bold"}
    left, right, bottom, top = view.letters
    x_mid, y_mid = box[0] + box[2] / 2, box[1] + box[3] / 2
    fig.text(box[0] / 2, y_mid, left, ha="center", va="center", **letter)
    fig.text(box[0] + box[2] + box[0] / 2, y_mid, right, ha="center", va="center", **letter)
    fig.text(x_mid, box[1] - MARGIN_PX / 2 / fig_h, bottom, ha="center", va="center", **letter)
    fig.text(x_mid, box[1] + box[3] + MARGIN_PX / 2 / fig_h, top, ha="center", va="center", **letter)
    bar_mm = 50.0 if width_mm >= 150 else 20.0
    x1 = 0.96
    x0 = x1 - bar_mm / width_mm
    ax.add_line(Line2D([x0, x1], [0.04, 0.04], transform=ax.transAxes, color="white", linewidth=3))
    ax.text((x0 + x1) / 2, 0.05, f"{bar_mm:g} mm", transform=ax.transAxes, ha="center", va="bottom",
            **_outlined({"color": "white", "fontsize": 8}))

    fig.text(0.01, 1 - 4 / fig_h, view.title, ha="left", va="top", color="white", fontsize=10)
    handles = [Patch(facecolor=tuple(line[v]), edgecolor="white", label=LABEL_NAMES[v].replace("_", " "))
               for v in present]
    legend_x = (image_w + 2 * MARGIN_PX) / fig_w + 0.01
    legend_top = 1 - TITLE_PX / fig_h
    if handles:
        legend = fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(legend_x, legend_top),
                            fontsize=9, frameon=False, labelcolor="white", handlelength=1.2)
        legend.set_title("labels", prop={"size": 9})
        legend.get_title().set_color("white")
    else:
        fig.text(legend_x, legend_top - 0.02, "no labels\nin this view", color="white", fontsize=9,
                 va="top")
    side = "anterior left" if left == "A" else "patient's right on the left"
    fig.text(legend_x, 0.02, f"{side}\n{note}\nvoxels {_spacing_text(view)} mm",
             color="#bbbbbb", fontsize=7.5, va="bottom", ha="left", wrap=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, facecolor="black", pil_kwargs={"compress_level": 2})


def _spacing_text(view: View) -> str:
    return " x ".join(f"{s:.2g}" for s in view.spacing_mm)
