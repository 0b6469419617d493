"""The cord's edge read from the image: each voxel's share of cord from its signal (partial volume).

A voxel on the cord's edge holds cord and CSF; on an MR that shows them apart its signal lies between
theirs in proportion. :func:`cord_shares` reads that share, for the cord's diameters in MSCC
(:mod:`spinelesion.measure.cord`) and for the cord's outline at inference
(:func:`spinelesion.inference.refine.snap_cord_to_image`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: Least cord-CSF signal difference, in units of the noise (robust SD inside the cord), at which the
#: image's partial volume is read on the cord's edge (:func:`cord_shares`); under it (CT: cord and
#: CSF about 30 HU apart) the labels alone are used.
CORD_CONTRAST_MIN_NOISE = 4.0

#: Depth (voxels) on each side of the cord's outline over which voxels count by their share of cord: a
#: scanner's blur spreads the cord's signal over about a voxel each way, and a band as wide as the blur
#: keeps the cord's total share (one voxel each way read real 3D T2 cords 0.9-1 mm too wide).
CORD_EDGE_BAND_VOXELS = 2

#: Largest relative difference between the cord's volume read from the image's shares and the labels'
#: at which the shares are used. Real 3D T2 and T2* scans of healthy cords: -4 to +15 %; a phantom
#: blurred by 0.8 voxel, whose thin CSF ring no longer gives a pure CSF signal: -29 % (and MSCC 10
#: points off), so the labels are used there.
CORD_SHARE_MAX_VOLUME_CHANGE = 0.2

#: The sac's median signal must lie at least this share of the way from the cord's signal to the CSF's:
#: the sac is mostly CSF, so a CSF signal it does not come near is not the CSF's.
SAC_MIN_CSF_SHARE = 0.5


@dataclass(frozen=True)
class CordEdge:
    """What the image says of the cord's edge (:func:`read_cord_edge`): ``shares`` (N,) the share of cord of
    each canal voxel, or None where it is not read; ``separation_sd`` how far apart the cord's and the CSF's
    signals lie in noise SDs (None where too few voxels of either tell)."""

    shares: np.ndarray | None
    separation_sd: float | None


def cord_shares(*, cord: np.ndarray, sac: np.ndarray, image: np.ndarray, flat: np.ndarray) -> np.ndarray | None:
    """:func:`read_cord_edge`'s shares alone."""
    return read_cord_edge(cord=cord, sac=sac, image=image, flat=flat).shares


def read_cord_edge(*, cord: np.ndarray, sac: np.ndarray, image: np.ndarray, flat: np.ndarray) -> CordEdge:
    """(N,) share of cord of the canal voxels at C-order flat indices ``flat`` (cord and sac labels,
    (X, Y, Z) bool each; ``image`` on the same grid), or None where the image does not show the cord
    against the CSF; with the cord-CSF separation in noise SDs.

    A voxel holding the cord's edge averages cord and CSF: its share is (I - CSF) / (cord - CSF),
    clipped to [0, 1], with the signals the medians over the cord's inner voxels (not on its outline)
    and over the sac farther than ``CORD_EDGE_BAND_VOXELS`` + 1 voxels from the cord (None when the sac's
    median lies less than ``SAC_MIN_CSF_SHARE`` of the way from the cord's signal to that CSF's: a CSF
    ring too thin to hold pure CSF, as on thick T1 slices with bright epidural fat, or a sac drawn into
    the fat round it). Read so on the
    cord voxels and the sac voxels within ``CORD_EDGE_BAND_VOXELS`` of the outline (26-neighbourhood),
    where no voxel outside the canal is as near; every other cord voxel counts 1 and every other sac
    voxel 0: beside tumour, bone or fat a voxel mixes a third signal, and its share of cord cannot be
    read from two. None too where the shares' cord volume differs from the labels' by over
    ``CORD_SHARE_MAX_VOLUME_CHANGE``. Needs the two
    signals ``CORD_CONTRAST_MIN_NOISE`` noise SDs apart: a T2 or T1 scan, not a plain CT."""
    # the canal's box, with room for the morphology below (it reaches band + 1 voxels): the crop of a
    # body CT is 50 times larger than its canal
    margin = CORD_EDGE_BAND_VOXELS + 2
    ijk = np.unravel_index(flat, cord.shape)
    box = tuple(slice(max(int(i.min()) - margin, 0), min(int(i.max()) + margin + 1, n)) for i, n in zip(ijk, cord.shape))
    cord, sac = cord[box], sac[box]
    local = np.ravel_multi_index(tuple(i - b.start for i, b in zip(ijk, box)), cord.shape)
    img = np.ravel(np.asarray(image)[box])
    cube = np.ones((3, 3, 3), bool)
    inner = ndimage.binary_erosion(cord, structure=cube)
    band = CORD_EDGE_BAND_VOXELS
    outside = ~(cord | sac)
    far_csf = sac & ~_grow(cord, band + 1)
    if inner.sum() < 20 or far_csf.sum() < 20:
        return CordEdge(None, None)
    cord_values = img[np.flatnonzero(inner)]
    with warnings.catch_warnings():  # an image of NaN only: no signal, no shares
        warnings.simplefilter("ignore", RuntimeWarning)
        signal_cord = float(np.nanmedian(cord_values))
        signal_csf = float(np.nanmedian(img[np.flatnonzero(far_csf)]))
        signal_sac = float(np.nanmedian(img[np.flatnonzero(sac)]))
        noise = 1.4826 * float(np.nanmedian(np.abs(cord_values - signal_cord)))
    if not np.isfinite(signal_csf - signal_cord):
        return CordEdge(None, None)
    separation = abs(signal_csf - signal_cord) / max(noise, 1e-9)
    if separation < CORD_CONTRAST_MIN_NOISE:
        return CordEdge(None, separation)
    if (signal_sac - signal_cord) / (signal_csf - signal_cord) < SAC_MIN_CSF_SHARE:
        # the sac as a whole does not read as CSF: the "CSF" far from the cord is something else
        # (a CSF ring too thin to hold pure CSF, its outer voxels the dura's and the epidural fat's; a sac
        # the network drew into the fat round it)
        return CordEdge(None, separation)
    touches_other = _grow(outside, band).ravel()[local]
    touches_cord = _grow(cord, band).ravel()[local]
    deep = ndimage.binary_erosion(cord, structure=cube, iterations=band).ravel()[local]
    is_cord = cord.ravel()[local]
    edge = np.where(is_cord, ~deep, touches_cord) & ~touches_other
    share = is_cord.astype(np.float64)
    read = (img[local[edge]] - signal_csf) / (signal_cord - signal_csf)
    share[edge] = np.where(np.isfinite(read), np.clip(read, 0.0, 1.0), share[edge])  # a NaN voxel keeps its label
    if abs(share.sum() / max(is_cord.sum(), 1) - 1.0) > CORD_SHARE_MAX_VOLUME_CHANGE:
        return CordEdge(None, separation)  # the image and the labels disagree on the cord's volume: not trusted
    return CordEdge(share, separation)


def _grow(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` dilated ``steps`` times by the 3x3x3 cube (nothing outside the array): one separable
    maximum filter of width 2 x steps + 1, the same voxels as repeated ``binary_dilation`` at a third of
    its time on a canal's box."""
    return ndimage.maximum_filter(mask, size=2 * steps + 1, mode="constant", cval=0)
