"""The viewer's copy of the scan (issue 14): on the input's exact grid, the labelled region and its
margin, int16 with a slope where needed, no patient data; and `infer --no-viewer` leaves it out."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from conftest import OBLIQUE_AFFINE, ct_volume, write_ct_series
from spinelesion.cli import main
from spinelesion.io.scan import Scan
from spinelesion.report.viewer import VIEWER_IMAGE, VIEWER_PAGE, save_viewer_image
from spinelesion.report.viewer.image import label_box


def test_viewer_image_sits_exactly_on_an_oblique_non_ras_input_grid(tmp_path):
    """An oblique grid stored in PSR order with a shear: the copy has the input's voxel order and
    affine (sform and qform), HU as int16, and nothing else in its header."""
    from spinelesion.io import load_scan

    affine = OBLIQUE_AFFINE.copy()
    affine[:3, :3] = affine[:3, [1, 2, 0]] * [[-1, 1, 1]]  # PSR-like axis order, one axis flipped
    affine[0, 1] += 0.05  # a small shear: only the sform can hold it
    volume = np.round(ct_volume((20, 9, 24)))
    scan = Scan(array=volume, affine=affine, modality="CT", source="test")
    path = save_viewer_image(scan, path=tmp_path / VIEWER_IMAGE)
    image = nib.load(path)
    assert image.get_data_dtype() == np.int16 and image.shape == scan.shape
    np.testing.assert_allclose(image.affine, affine, atol=1e-6)
    np.testing.assert_allclose(image.header.get_sform(), affine, atol=1e-6)
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1
    assert np.array_equal(np.asarray(image.dataobj), volume)
    header = image.header
    assert bytes(header["descrip"]).strip(b"\x00") == b"" and bytes(header["aux_file"]).strip(b"\x00") == b""
    assert len(header.extensions) == 0 and int(header["intent_code"]) == 0
    reread = load_scan(path)  # and the project's own loader agrees
    np.testing.assert_allclose(reread.affine, affine, atol=1e-5)
    assert np.array_equal(reread.array, volume)


def test_viewer_image_keeps_the_labelled_region_where_it_lies(tmp_path):
    """The copy holds the labelled box and its margin (clipped to the grid); every voxel keeps its
    world position on an oblique grid."""
    volume = np.round(ct_volume((40, 36, 30)))
    labels = np.zeros(volume.shape, np.uint8)
    labels[18:22, 15:20, 12:14] = 1
    affine = OBLIQUE_AFFINE.copy()
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    box = label_box(labels, affine, margin_mm=3 * float(spacing.max()))
    assert all(b.start < lo and b.stop > hi for b, lo, hi in zip(box, (18, 15, 12), (22, 20, 14)))
    assert all(b.start >= 0 and b.stop <= n for b, n in zip(box, volume.shape))
    assert label_box(np.zeros_like(labels), affine) is None
    path = save_viewer_image(Scan(array=volume, affine=affine, modality="CT", source="test"),
                             path=tmp_path / VIEWER_IMAGE, box=box)
    image = nib.load(path)
    data = np.asarray(image.dataobj)
    for ijk in ([0, 0, 0], [3, 5, 2], [s - 1 for s in image.shape]):
        source = [b.start + i for b, i in zip(box, ijk)]
        np.testing.assert_allclose(nib.affines.apply_affine(image.affine, ijk),
                                   nib.affines.apply_affine(affine, source), atol=1e-6)
        assert data[tuple(ijk)] == volume[tuple(source)]


def test_viewer_image_scales_intensities_that_do_not_fit_int16(tmp_path):
    rng = np.random.default_rng(0)
    for low, high in ((0.0, 1.0), (0.0, 60000.0), (-5.5, 17.25)):
        volume = rng.uniform(low, high, (12, 10, 8)).astype(np.float32)
        path = save_viewer_image(Scan(array=volume, affine=np.eye(4), modality="MR"), path=tmp_path / "v.nii.gz")
        image = nib.load(path)
        slope = float(image.dataobj.slope)
        assert image.get_data_dtype() == np.int16
        assert np.abs(np.asarray(image.dataobj) - volume).max() <= slope / 2 + 1e-6 * high, (low, high, slope)


def test_viewer_image_of_a_dicom_series_carries_no_patient_data(ct_series, tmp_path):
    from spinelesion.io import load_scan

    folder, volume, affine = ct_series
    scan = load_scan(folder)
    path = save_viewer_image(scan, path=tmp_path / VIEWER_IMAGE)
    raw = nib.load(path)
    np.testing.assert_allclose(raw.affine, affine, atol=1e-4)
    assert np.array_equal(np.asarray(raw.dataobj), np.round(scan.array))
    import gzip

    data = gzip.decompress(path.read_bytes())
    for secret in (b"Doe", b"Jane", b"PID-SECRET-42", b"19230405"):
        assert secret not in data


def test_no_viewer_keeps_the_overlays_and_writes_no_viewer(tmp_path, tiny_model, capsys):
    write_ct_series(tmp_path / "in" / "series", ct_volume((40, 36, 16)), OBLIQUE_AFFINE)
    assert main(["infer", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--model", str(tiny_model),
                 "--device", "cpu", "--quiet", "--no-viewer"]) == 0
    assert "spinelesion review" not in capsys.readouterr().out  # no viewer to point at
    (case_dir,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    outputs = set(json.loads((case_dir / "status.json").read_text())["outputs"])
    assert "sagittal.png" in outputs and not {VIEWER_IMAGE, VIEWER_PAGE} & outputs
    assert not (case_dir / VIEWER_IMAGE).exists() and not (case_dir / VIEWER_PAGE).exists()
    assert VIEWER_PAGE not in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
