"""NIfTI / MHA / NRRD loading and label writing: geometry survives load -> save -> load."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conftest import OBLIQUE_AFFINE, make_affine, rotation

from spinelesion.errors import LabelMapError
from spinelesion.io import load_scan, save_labels

#: Oblique, LPS-stored and PSR-stored grids (the PSR one as the SCT example stores its T2).
AFFINES = {
    "oblique": OBLIQUE_AFFINE,
    "LPS": make_affine(np.diag([-1.0, -1.0, 1.0]), (0.6, 0.6, 1.5), (120.0, 90.0, -40.0)),
    "PSR": make_affine(np.array([[0, 0, 1], [-1, 0, 0], [0, 1, 0]], float), (1.0, 0.8, 1.2), (-30, 31, -19)),
    "oblique_LPS": make_affine(rotation("x", -25) @ rotation("y", 7) @ np.diag([-1.0, -1.0, 1.0]),
                               (0.5, 0.9, 3.3), (12.5, -7.25, 100.0)),
}


def _volume(shape=(12, 10, 8), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(100, 30, size=shape).astype(np.float32)


@pytest.mark.parametrize("name", sorted(AFFINES))
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nifti_round_trip(tmp_path, name, suffix):
    affine = AFFINES[name]
    volume = _volume()
    path = tmp_path / f"scan{suffix}"
    nib.save(nib.Nifti1Image(volume, affine), path)
    scan = load_scan(path)
    assert scan.shape == volume.shape and scan.array.dtype == np.float32
    np.testing.assert_allclose(scan.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(scan.array, volume)
    assert scan.orientation == "".join(nib.aff2axcodes(affine))

    labels = (scan.array > 100).astype(np.uint8) * 3
    out = save_labels(labels, like=scan, path=tmp_path / "out" / f"labels{suffix}")
    written = nib.load(out)
    np.testing.assert_allclose(written.affine, affine, atol=1e-5)  # independent reader
    np.testing.assert_allclose(written.get_sform(), affine, atol=1e-5)
    back = load_scan(out)
    assert back.shape == scan.shape
    np.testing.assert_allclose(back.affine, scan.affine, atol=1e-5)
    np.testing.assert_array_equal(back.array, labels)
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # atomic: no temporary left


@pytest.mark.parametrize("dtype,slope", [(np.int16, 1.0), (np.uint8, 1.0), (np.float32, 1.0), (np.int16, 2.5)])
def test_gzipped_nifti_read_in_pieces_equals_nibabel(tmp_path, monkeypatch, dtype, slope):
    """The gzipped reader that inflates a few planes at a time (here 3 of 11 per piece) gives
    nibabel's scaled values, C-ordered float32; a scaled file takes the general path, same values."""
    from spinelesion.io import load as loader

    volume = np.random.default_rng(3).normal(0, 1000 if dtype == np.int16 else 50, (13, 9, 11))
    volume = np.clip(volume, np.iinfo(dtype).min, np.iinfo(dtype).max) if dtype != np.float32 else volume
    img = nib.Nifti1Image(volume.astype(dtype), AFFINES["oblique"])
    img.header.set_slope_inter(slope, 0.0)
    nib.save(img, tmp_path / "scan.nii.gz")
    monkeypatch.setattr(loader, "INFLATE_CHUNK_BYTES", 3 * 13 * 9 * np.dtype(dtype).itemsize)
    pieces = []
    original = loader._gzipped_volume_c_order
    monkeypatch.setattr(loader, "_gzipped_volume_c_order", lambda *a, **k: pieces.append(1) or original(*a, **k))
    scan = load_scan(tmp_path / "scan.nii.gz")
    expected = np.asarray(nib.load(tmp_path / "scan.nii.gz").get_fdata(), dtype=np.float32)
    assert scan.array.flags.c_contiguous and scan.array.dtype == np.float32 and pieces
    np.testing.assert_array_equal(scan.array, expected)
    assert (original(nib.load(tmp_path / "scan.nii.gz").dataobj, tmp_path / "scan.nii.gz") is None) == (slope != 1.0)


def _itk_image(volume, affine_ras):
    """A SimpleITK image with the grid of ``affine_ras`` (ITK works in LPS)."""
    import SimpleITK as sitk

    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    img = sitk.GetImageFromArray(np.transpose(volume, (2, 1, 0)))
    img.SetSpacing(spacing.tolist())
    img.SetDirection((lps[:3, :3] / spacing).ravel().tolist())
    img.SetOrigin(lps[:3, 3].tolist())
    return img


def _itk_world_ras(img, index) -> np.ndarray:
    """World point of a voxel computed by ITK itself, converted to RAS."""
    x, y, z = img.TransformContinuousIndexToPhysicalPoint([float(v) for v in index])
    return np.array([-x, -y, z])


@pytest.mark.parametrize("name", ["oblique", "PSR", "oblique_LPS"])
@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_itk_formats_match_itk_geometry(tmp_path, name, suffix):
    import SimpleITK as sitk

    volume = _volume(seed=1)
    img = _itk_image(volume, AFFINES[name])
    path = tmp_path / f"scan{suffix}"
    sitk.WriteImage(img, str(path))
    scan = load_scan(path)
    np.testing.assert_array_equal(scan.array, volume)
    rng = np.random.default_rng(0)
    for index in [(0, 0, 0), (11, 9, 7), *rng.uniform(0, 8, size=(10, 3))]:
        np.testing.assert_allclose((scan.affine @ [*index, 1])[:3], _itk_world_ras(img, index), atol=1e-4)

    out = save_labels((volume > 100).astype(np.uint8), like=scan, path=tmp_path / f"labels{suffix}")
    written = sitk.ReadImage(str(out))
    for index in [(0, 0, 0), (11, 9, 7), (3.5, 2.25, 6.0)]:
        np.testing.assert_allclose(_itk_world_ras(written, index), _itk_world_ras(img, index), atol=1e-4)
    np.testing.assert_array_equal(np.transpose(sitk.GetArrayFromImage(written), (2, 1, 0)), volume > 100)


def test_save_labels_rejects_wrong_shape_and_values(tmp_path):
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(_volume(), OBLIQUE_AFFINE), path)
    scan = load_scan(path)
    with pytest.raises(LabelMapError, match="shape"):
        save_labels(np.zeros((3, 3, 3), np.uint8), like=scan, path=tmp_path / "l.nii.gz")
    with pytest.raises(LabelMapError, match="0..255"):
        save_labels(np.full(scan.shape, 300), like=scan, path=tmp_path / "l.nii.gz")
    assert not (tmp_path / "l.nii.gz").exists()


def test_real_psr_t2_and_cord_mask_align(real_data):
    """sct_t2/t2.nii.gz is stored PSR; its manual cord mask shares the grid and lies on the cord."""
    t2 = load_scan(real_data / "sct_t2/t2.nii.gz")
    mask_scan = load_scan(real_data / "sct_t2/t2_seg-manual.nii.gz")
    assert t2.orientation == "PSR" and t2.shape == (60, 55, 52)
    assert t2.modality == "MR"
    np.testing.assert_allclose(mask_scan.affine, t2.affine, atol=1e-4)
    np.testing.assert_allclose(t2.affine, nib.load(real_data / "sct_t2/t2.nii.gz").affine, atol=1e-6)
    mask = mask_scan.array > 0.5
    volume_mm3 = mask.sum() * t2.voxel_volume_ml * 1000
    assert volume_mm3 > 500
    # The cord is a long tube along the S axis (array axis 1 in PSR): present on most slices.
    assert mask.any(axis=(0, 2)).mean() > 0.8
    # Cross-section about 69-85 mm^2 (README): median area per S-slice, in mm^2.
    areas = mask.sum(axis=(0, 2))[mask.any(axis=(0, 2))] * t2.spacing_mm[0] * t2.spacing_mm[2]
    assert 50 < np.median(areas) < 110
    # On T2 the cord is darker than the CSF ring around it. That contrast peaks where the mask
    # sits: moving it 2 or 4 voxels across the cord (P or R axis) loses most of it.
    def contrast(m):
        ring = _dilate(m, 3) & ~_dilate(m, 1)
        return float(np.median(t2.array[ring]) - np.median(t2.array[m]))

    aligned = contrast(mask)
    assert aligned > 200
    for axis in (0, 2):
        for shift in (-4, -2, 2, 4):
            assert contrast(np.roll(mask, shift, axis=axis)) < 0.5 * aligned


def _dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=iterations)


def test_gzipped_nifti_holds_nibabels_bytes_in_one_gzip_member(tmp_path):
    """The threaded deflate writes one gzip member whose inflated bytes are nibabel's own .nii."""
    import zlib

    from spinelesion.io.save import save_nifti

    volume = (np.random.default_rng(1).random((70, 60, 50)) * 7).astype(np.uint8)
    img = nib.Nifti1Image(volume, AFFINES["oblique_LPS"])
    save_nifti(img, tmp_path / "labels.nii.gz")
    nib.save(img, tmp_path / "labels.nii")
    stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
    inflated = stream.decompress((tmp_path / "labels.nii.gz").read_bytes())
    assert stream.eof and not stream.unused_data
    assert inflated == (tmp_path / "labels.nii").read_bytes()
