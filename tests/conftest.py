"""Shared fixtures: the real scans folder and builders for synthetic DICOM written with pydicom.

The DICOM builders write what a scanner would: one CT slice per file (or one enhanced
multi-frame file) from a known (X, Y, Z) HU volume and a known voxel -> RAS+ affine, so a loader
can be checked against the truth it was made from.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared/data/real"
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of small real scans (``../shared/data/real``); skips the test when absent."""
    if not REAL_DATA.is_dir():
        pytest.skip(f"real test data not found at {REAL_DATA}")
    return REAL_DATA


@pytest.fixture
def real_series_with_labels(real_data, tmp_path):
    """(scan, labels): a copy of the real anonymised, UID-less JPEG 2000 CT series and a small
    label map on its grid (a body, the cord, a lesion in the body), for SEG and SR round trips."""
    import shutil

    from spinelesion import labels as schema
    from spinelesion.io import load_scan

    folder = tmp_path / "series"
    shutil.copytree(real_data / "totalseg_ct_dicom/series", folder)
    scan = load_scan(folder)
    labels = np.zeros(scan.shape, np.uint8)
    labels[240:272, 300:340, 2:18] = schema.VERTEBRAL_BODY
    labels[250:262, 345:360, 2:18] = schema.SPINAL_CORD
    labels[250:256, 310:318, 9:12] = schema.LESION
    return scan, labels


def rotation(axis: str, degrees: float) -> np.ndarray:
    """A 3x3 rotation about x, y or z."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    r = np.eye(3)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def make_affine(direction: np.ndarray, spacing_mm, origin_mm) -> np.ndarray:
    """4x4 voxel -> world affine from a 3x3 direction matrix (columns = axes), spacing and origin."""
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(direction, float) * np.asarray(spacing_mm, float)[None, :]
    affine[:3, 3] = origin_mm
    return affine


#: An oblique grid: rotated 20 deg about z and 10 deg about x, anisotropic voxels.
OBLIQUE_AFFINE = make_affine(rotation("z", 20) @ rotation("x", 10), (0.8, 0.7, 2.5), (-40.0, 25.0, -310.0))


def ct_volume(shape=(24, 20, 9), seed: int = 0) -> np.ndarray:
    """An (X, Y, Z) integer-valued HU volume: air, a soft-tissue block, a bone block, noise."""
    rng = np.random.default_rng(seed)
    vol = np.full(shape, -1000.0)
    vol[3:-3, 3:-3, :] = 40.0
    vol[8:14, 6:12, 2:-2] = 700.0
    vol += rng.integers(-20, 21, size=shape)
    return vol.astype(np.float32)


def _base_dataset(sop_class_uid, *, study_uid, series_uid, modality, patient_name):
    import pydicom
    import pydicom.uid
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = patient_name
    ds.PatientID = "PID-SECRET-42"
    ds.PatientBirthDate = "19230405"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = pydicom.uid.generate_uid(entropy_srcs=[study_uid, "for"])
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", ""
    ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.SeriesNumber = 3
    ds.Manufacturer = "test"
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    return ds


def _geometry(affine_ras: np.ndarray, k: int):
    """IOP, IPP and PixelSpacing of slice k of a grid whose voxel (i, j) = (column, row)."""
    lps = LPS_TO_RAS @ affine_ras
    col_step, row_step = lps[:3, 0], lps[:3, 1]
    iop = np.concatenate([col_step / np.linalg.norm(col_step), row_step / np.linalg.norm(row_step)])
    ipp = (lps @ np.array([0.0, 0.0, k, 1.0]))[:3]
    spacing = [np.linalg.norm(row_step), np.linalg.norm(col_step)]  # (between rows, between columns)
    return iop, ipp, spacing


def write_ct_series(folder: Path, volume: np.ndarray, affine_ras: np.ndarray, *, series_uid=None,
                    study_uid=None, modality="CT", patient_name="Doe^Jane", intercept=-1024.0,
                    skip=(), duplicate_of: dict | None = None, seed=0, prefix="IM",
                    transfer_syntax=None, description="synthetic") -> list[Path]:
    """Write ``volume`` ((X, Y, Z) modality values) as one classic DICOM file per slice.

    Files are named in a shuffled order; ``skip`` drops slice indices; ``duplicate_of`` {k: k2}
    writes slice k at the position of slice k2. Stored value = value - intercept.
    """
    import pydicom.uid

    folder.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or pydicom.uid.generate_uid()
    series_uid = series_uid or pydicom.uid.generate_uid()
    order = [k for k in range(volume.shape[2]) if k not in skip]
    random.Random(seed).shuffle(order)
    paths = []
    for n, k in enumerate(order):
        sop = pydicom.uid.CTImageStorage if modality == "CT" else pydicom.uid.MRImageStorage
        ds = _base_dataset(sop, study_uid=study_uid, series_uid=series_uid, modality=modality,
                           patient_name=patient_name)
        iop, ipp, spacing = _geometry(affine_ras, (duplicate_of or {}).get(k, k))
        ds.ImageOrientationPatient = [round(float(v), 10) for v in iop]
        ds.ImagePositionPatient = [round(float(v), 6) for v in ipp]
        ds.PixelSpacing = [round(float(v), 10) for v in spacing]
        ds.SliceThickness = float(np.linalg.norm(affine_ras[:3, 2]))
        ds.InstanceNumber = n + 1
        ds.SeriesDescription = description
        ds.RescaleIntercept, ds.RescaleSlope = intercept, 1.0
        stored = np.round(volume[:, :, k].T - intercept).astype(np.uint16)
        ds.Rows, ds.Columns = stored.shape
        ds.PixelData = stored.tobytes()
        if transfer_syntax is not None:
            ds.compress(transfer_syntax)
        path = folder / f"{prefix}{n:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def write_enhanced_ct(path: Path, volume: np.ndarray, affine_ras: np.ndarray, *, intercept=-1024.0,
                      seed=0, patient_name="Doe^Jane") -> list[int]:
    """Write ``volume`` as one Enhanced CT multi-frame file, frames in shuffled slice order.

    Geometry per the functional group macros (PS3.3 C.7.6.16): shared PlaneOrientation,
    PixelMeasures and PixelValueTransformation, per-frame PlanePosition. Returns the slice index
    stored in each frame.
    """
    import pydicom
    import pydicom.uid
    from pydicom.sequence import Sequence

    ds = _base_dataset(pydicom.uid.EnhancedCTImageStorage, study_uid=pydicom.uid.generate_uid(),
                       series_uid=pydicom.uid.generate_uid(), modality="CT", patient_name=patient_name)
    order = list(range(volume.shape[2]))
    random.Random(seed).shuffle(order)
    iop, _, spacing = _geometry(affine_ras, 0)

    def item(**kw):
        d = pydicom.Dataset()
        for key, value in kw.items():
            setattr(d, key, value)
        return d

    shared = item(
        PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=[round(float(v), 10) for v in iop])]),
        PixelMeasuresSequence=Sequence([item(PixelSpacing=[round(float(v), 10) for v in spacing],
                                             SliceThickness=float(np.linalg.norm(affine_ras[:3, 2])))]),
        PixelValueTransformationSequence=Sequence([item(RescaleIntercept=intercept, RescaleSlope=1.0,
                                                        RescaleType="HU")]))
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence([
        item(PlanePositionSequence=Sequence([item(ImagePositionPatient=[
            round(float(v), 6) for v in _geometry(affine_ras, k)[1]])]),
             FrameContentSequence=Sequence([item(InStackPositionNumber=k + 1)]))
        for k in order])
    ds.NumberOfFrames = len(order)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    ds.ContentDate, ds.ContentTime, ds.InstanceNumber = "20240101", "120000", 1
    frames = [np.round(volume[:, :, k].T - intercept).astype(np.uint16) for k in order]
    ds.Rows, ds.Columns = frames[0].shape
    ds.PixelData = np.stack(frames).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return order


@pytest.fixture
def ct_series(tmp_path):
    """A synthetic oblique CT series in tmp_path: (folder, HU volume, RAS affine)."""
    volume = ct_volume()
    folder = tmp_path / "series"
    write_ct_series(folder, volume, OBLIQUE_AFFINE)
    return folder, volume, OBLIQUE_AFFINE


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped, with the reason, where no CUDA GPU is usable."""
    if not any("gpu" in item.keywords for item in items):
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run scripts/gpu_check.sh on a GPU machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A random-weight UNet checkpoint in the project's format (CT, 4 mm, 16^3 patches)."""
    import torch

    from spinelesion.network.checkpoint import save_checkpoint
    from spinelesion.labels import LABEL_NAMES
    from spinelesion.network.factory import build_network

    torch.manual_seed(0)
    params = {"channels": [4, 8], "strides": [2], "num_res_units": 0}
    net = build_network(name="unet", params=params)
    meta = {
        "label_names": {str(k): v for k, v in LABEL_NAMES.items()},
        "network": {"name": "unet", "params": params},
        "preprocessing": {"orientation": "RAS", "spacing_mm": [4.0, 4.0, 4.0], "modality": "CT",
                          "intensity": {"kind": "ct_window", "min_hu": -200.0, "max_hu": 1300.0}},
        "patch_size": [16, 16, 16], "epoch": 0, "metrics": {}, "training": {"command": "test"},
        "config": {},
    }
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny_ct.safetensors",
                           state_dict=net.state_dict(), meta=meta)


def page_check_script(table_id: str) -> str:
    """A <script> for a page under test in Chromium: once loaded, <body> records how many images
    there are (``data-images-total``), which did not decode (``data-images-broken``, JSON list of
    src) and the rendered height of the element ``table_id`` (``data-table-height``, 0 if absent)."""
    return """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (im) { return !(im.complete && im.naturalWidth > 0); })
                     .map(function (im) { return im.getAttribute("src"); });
  document.body.setAttribute("data-images-total", String(images.length));
  document.body.setAttribute("data-images-broken", JSON.stringify(broken));
  var t = document.getElementById("%s");
  document.body.setAttribute("data-table-height", String(t ? t.getBoundingClientRect().height : 0));
});
</script>""" % table_id
