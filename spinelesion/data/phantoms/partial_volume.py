"""Partial volume of the cord and the CSF, for benchmarks that need sub-voxel truth in the image.

A phantom's labels and image are drawn at voxel centres: at <= 1.6 mm the image holds no partial
volume (``render_phantom`` averages sub-slices only across thicker slices), so no measurement can
find an edge between voxel centres in it. :func:`canal_fractions` evaluates the phantom's own cord
and sac shapes on a grid ``factor`` times finer along every axis, in a box of the scan, and returns
each voxel's share of cord and of free CSF; :func:`partial_volume_image` writes those shares into
the image (cord and CSF at the phantom's own signal, noise as its own), as a scanner's voxel
averages what it holds.
"""

from __future__ import annotations

import numpy as np

from spinelesion import labels as L


def canal_fractions(params: dict, *, affine: np.ndarray, box: tuple[slice, slice, slice],
                    factor: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(cord, free CSF) shares in [0, 1], each shaped like ``box``, of the voxels of the grid
    ``affine`` in ``box`` (three slices with explicit starts and stops), from ``factor``^3 sub-voxel
    samples of the phantom drawn as ``params``. Free CSF: the dural sac less the cord and the
    epidural tumour. Phantoms drawn with ``context`` (conus, skull base) are refused: their canal
    is trimmed by steps not repeated here."""
    from spinelesion.data.phantoms.phantom import _tube_coords, column_geometry

    if params.get("context"):
        raise ValueError("canal_fractions: phantoms with context are not supported (conus and skull base trims)")
    verts, epi = params["anatomy"]["vertebrae"], params["pathology"]["epidural"]
    _, line, canal = column_geometry(params)
    canal_hw_of = np.array([x["canal_half_width_mm"] for x in verts])
    cord_hw_of = np.array([x["cord_half_width_mm"] for x in verts])
    shape = tuple(b.stop - b.start for b in box)
    cord = np.zeros(shape, np.float32)
    csf = np.zeros(shape, np.float32)
    offset = (np.arange(factor) - (factor - 1) / 2) / factor  # sub-voxel centres, in voxels
    slab = max(1, 2_000_000 // (shape[0] * shape[1] * factor ** 3))  # slices per pass: bounded memory
    for z0 in range(0, shape[2], slab):
        nz = min(slab, shape[2] - z0)
        fine = affine.copy()
        fine[:3, :3] = affine[:3, :3] / factor
        start = np.array([box[0].start, box[1].start, box[2].start + z0], float) + offset[0]
        fine[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
        fshape = (shape[0] * factor, shape[1] * factor, nz * factor)
        s, u, v = _tube_coords(line, fine, fshape, 1)
        canal_hw = line.interp(s, canal_hw_of)
        in_sac = canal.sac(u, v, canal_hw - 2.0)
        in_cord = canal.cord(s, u, v, line.interp(s, cord_hw_of))
        free = in_sac & ~in_cord
        if epi is not None:
            free &= ~canal.mass(s, u, v, canal_hw)
        for out, mask in ((cord, in_cord), (csf, free)):
            out[:, :, z0:z0 + nz] = mask.reshape(shape[0], factor, shape[1], factor, nz, factor).mean(axis=(1, 3, 5))
    return cord, csf


def partial_volume_image(phantom, *, factor: int = 3, margin: int = 3, seed: int = 0) -> np.ndarray:
    """The phantom's image with its canal re-drawn with partial volume (float32, the scan's shape).

    In the box of the cord and sac labels (plus ``margin`` voxels), every voxel becomes
    cord share x cord signal + CSF share x CSF signal + the rest x what surrounds the sac, plus
    Gaussian noise as strong as the image's own in the cord; the signals are the image's medians
    over the cord labels, the sac labels and the non-canal voxels next to the sac."""
    from scipy import ndimage

    labels, image = phantom.labels, np.asarray(phantom.scan.array, np.float32)
    canal = (labels == L.SPINAL_CORD) | (labels == L.THECAL_SAC)
    if not canal.any():
        return image.copy()
    idx = np.nonzero(canal)
    box = tuple(slice(max(0, int(i.min()) - margin), min(n, int(i.max()) + margin + 1))
                for i, n in zip(idx, labels.shape))
    cord, csf = canal_fractions(phantom.params, affine=phantom.scan.affine, box=box, factor=factor)
    lab, img = labels[box], image[box]
    in_cord = lab == L.SPINAL_CORD
    around = ndimage.binary_dilation(canal[box], iterations=2) & ~canal[box]
    signal_cord = float(np.median(img[in_cord]))
    signal_csf = float(np.median(img[lab == L.THECAL_SAC]))
    signal_around = float(np.median(img[around])) if around.any() else 0.0
    inner = ndimage.binary_erosion(in_cord)
    noise = float(np.std(img[inner])) if inner.sum() > 10 else 0.0
    rest = np.clip(1.0 - cord - csf, 0.0, 1.0)
    other = np.where(canal[box], np.float32(signal_around), img)  # a canal voxel's rest is what surrounds the sac
    redrawn = cord * signal_cord + csf * signal_csf + rest * other
    redrawn += np.random.default_rng(seed).normal(0.0, noise, redrawn.shape).astype(np.float32)
    out = image.copy()
    near = cord + csf > 0
    out[box] = np.where(near | canal[box], redrawn, img)
    return out
