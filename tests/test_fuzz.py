"""Fuzz suite (issue 13): corrupt every input type at many offsets and run ``inspect`` and ``infer``.

Every corrupted input must give 0 tracebacks, one line each, 0 partial files, and leave the
other scans unaffected. A DICOM corpus loses its attributes one at a time: load, infer and the
DICOM SEG either work or fail with a one-line reason. Property-based round trips (hypothesis):
random orientations, obliquity and spacing through load, infer's resampling and save land on
the exact input grid.

The default run takes a fast subset (a few offsets per input type, a handful of hypothesis
examples); the full suite is marked ``slow`` and runs only with ``SPINELESION_FUZZ=full``
(``SPINELESION_FUZZ=full python -m pytest -m slow tests/test_fuzz.py``), so the whole default
run stays within its time budget.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from conftest import OBLIQUE_AFFINE, ct_volume, make_affine, rotation, write_ct_series, write_enhanced_ct
from spinelesion.cli import main
from spinelesion.errors import SpinelesionError
from spinelesion.pipeline.batch import run_batch
from spinelesion.io.atomic import is_temporary
from spinelesion.io.load import load_scan
from spinelesion.io.save import save_image, save_labels
from spinelesion.io.scan import Scan

FULL = os.environ.get("SPINELESION_FUZZ") == "full"
SHAPE = (20, 18, 8)
AFFINE = make_affine(rotation("z", 15) @ np.diag([-1.0, 1.0, 1.0]), (1.2, 0.9, 2.5), (10.0, -20.0, 30.0))


def _good_file(folder: Path, suffix: str) -> Path:
    scan = Scan(array=ct_volume(SHAPE), affine=AFFINE, modality="CT", source="fuzz")
    return save_image(scan, path=folder / f"good{suffix}", dtype=np.int16)


def _offsets(size: int, *, full: bool) -> list[int]:
    """Byte offsets spread over a file: the header's first bytes, then fractions of the size."""
    fixed = [0, 1, 4, 40, 70, 76, 108, 252, 280, 344, 348] if full else [0, 4, 40, 76, 344]
    fractions = np.linspace(0.0, 0.999, 25 if full else 5)
    return sorted({o for o in fixed + [int(f * size) for f in fractions] if o < size})


def _truncations_and_flips(good: Path, out: Path, *, full: bool) -> list[Path]:
    data = good.read_bytes()
    name, suffix = good.name.split(".", 1)
    made = []
    for offset in _offsets(len(data), full=full):
        path = out / f"trunc{offset}.{suffix}"
        path.write_bytes(data[:offset])
        made.append(path)
        flipped = bytearray(data)
        for k in range(offset, min(offset + 4, len(data))):
            flipped[k] ^= 0xFF
        path = out / f"flip{offset}.{suffix}"
        path.write_bytes(bytes(flipped))
        made.append(path)
    return made


def _nifti_extremes(out: Path, *, full: bool) -> list[Path]:
    """NIfTI headers with extreme fields: spacing zero, negative, NaN, infinite; singular or NaN
    affines; huge or negative dimensions; a data offset past the end; an unknown voxel type."""
    base = nib.Nifti1Image(ct_volume(SHAPE).astype(np.int16), AFFINE)
    made = []

    def save(name, img):
        path = out / f"{name}.nii"
        nib.save(img, str(path))
        made.append(path)
        return path

    for value in ([0.0, 0.0, 0.0], [-1.0, 1.0, 2.0], [np.nan, 1.0, 1.0], [np.inf, 1.0, 1.0], [1e-30, 1.0, 1.0]):
        img = nib.Nifti1Image(ct_volume(SHAPE).astype(np.int16), None)
        img.header.set_sform(None, code=0)
        img.header.set_qform(None, code=0)
        img.header["pixdim"][1:4] = value
        save(f"pixdim_{'_'.join(str(v) for v in value)}", img)
    singular = AFFINE.copy()
    singular[:3, 1] = singular[:3, 0]
    nan_affine = AFFINE.copy()
    nan_affine[0, 3] = np.nan
    for name, affine in (("singular_sform", singular), ("nan_sform", nan_affine), ("zero_sform", np.diag([0, 0, 0, 1.0]))):
        img = nib.Nifti1Image(ct_volume(SHAPE).astype(np.int16), None)
        img.header.set_qform(None, code=0)
        img.header.set_sform(affine, code=1)
        save(name, img)
    good = save("template", base)
    made.remove(good)
    raw = good.read_bytes()
    edits = {"huge_dims": ("<8h", 40, (3, 32000, 32000, 32000, 1, 1, 1, 1)),
             "negative_dim": ("<8h", 40, (3, -20, 18, 8, 1, 1, 1, 1)),
             "zero_dim": ("<8h", 40, (3, 0, 18, 8, 1, 1, 1, 1)),
             "ndim_9": ("<8h", 40, (9, 20, 18, 8, 1, 1, 1, 1)),
             "offset_past_end": ("<f", 108, (1e9,)),
             "bad_datatype": ("<h", 70, (1234,)),
             "slope_nan": ("<f", 112, (np.nan,))}
    if not full:
        edits = {k: edits[k] for k in ("huge_dims", "negative_dim", "offset_past_end", "bad_datatype")}
    for name, (fmt, offset, values) in edits.items():
        data = bytearray(raw)
        struct.pack_into(fmt, data, offset, *values)
        path = out / f"{name}.nii"
        path.write_bytes(bytes(data))
        made.append(path)
    good.unlink()
    return made


def _mha_extremes(out: Path, *, full: bool) -> list[Path]:
    """MHA headers with extreme ElementSpacing, TransformMatrix and DimSize values."""
    good = _good_file(out, ".mha")
    data = good.read_bytes()
    end = data.index(b"ElementDataFile")
    header, rest = data[:end].decode(), data[end:]
    lines = header.splitlines()
    edits = {"spacing_zero": ("ElementSpacing", "0 0 0"), "spacing_negative": ("ElementSpacing", "-1 1 2"),
             "spacing_nan": ("ElementSpacing", "nan 1 1"), "matrix_singular": ("TransformMatrix", "1 0 0 1 0 0 0 0 1"),
             "matrix_zero": ("TransformMatrix", "0 0 0 0 0 0 0 0 0"), "dims_huge": ("DimSize", "100000 100000 100000"),
             "dims_zero": ("DimSize", "0 18 8"), "dims_negative": ("DimSize", "-20 18 8"),
             "offset_nan": ("Offset", "nan 0 0")}
    if not full:
        edits = {k: edits[k] for k in ("spacing_zero", "spacing_nan", "matrix_singular", "dims_huge")}
    made = []
    for name, (key, value) in edits.items():
        new = [f"{key} = {value}" if line.split("=")[0].strip() == key else line for line in lines]
        path = out / f"{name}.mha"
        path.write_bytes(("\n".join(new) + "\n").encode() + rest)
        made.append(path)
    good.unlink()
    return made


def _dicom_variants(root: Path, *, full: bool) -> list[Path]:
    """Series folders with one file truncated or flipped, and extreme geometry attributes."""
    made = []
    base = root / "template"
    files = write_ct_series(base, ct_volume(SHAPE), AFFINE)
    size = files[0].stat().st_size
    for offset in _offsets(size, full=full)[:: 1 if full else 2]:
        for kind in ("trunc", "flip"):
            folder = root / f"{kind}{offset}"
            write_ct_series(folder, ct_volume(SHAPE), AFFINE)  # a series of its own (own UIDs)
            target = folder / files[3].name
            data = bytearray(target.read_bytes())
            if kind == "trunc":
                data = data[:offset]
            else:
                for k in range(offset, min(offset + 4, len(data))):
                    data[k] ^= 0xFF
            target.write_bytes(bytes(data))
            made.append(folder)
    edits = {"spacing_zero": ("PixelSpacing", [0.0, 0.0]), "spacing_nan": ("PixelSpacing", ["nan", "1"]),
             "spacing_negative": ("PixelSpacing", [-1.0, 1.0]),
             "iop_singular": ("ImageOrientationPatient", [1, 0, 0, 1, 0, 0]),
             "iop_zero": ("ImageOrientationPatient", [0, 0, 0, 0, 0, 0]),
             "rows_huge": ("Rows", 65535), "ipp_same": ("ImagePositionPatient", [0, 0, 0]),
             "slope_zero": ("RescaleSlope", 0), "bits_weird": ("BitsAllocated", 12)}
    if not full:
        edits = {k: edits[k] for k in ("spacing_zero", "iop_singular", "rows_huge", "ipp_same")}
    for name, (keyword, value) in edits.items():
        folder = root / name
        write_ct_series(folder, ct_volume(SHAPE), AFFINE)
        for path in folder.iterdir():
            ds = pydicom.dcmread(path)
            setattr(ds, keyword, value)
            ds.save_as(path)
        made.append(folder)
    for offset in _offsets(4096, full=full)[:: 1 if full else 2]:  # header region of a multi-frame file
        path = root / f"enhanced_trunc{offset}" / "multi.dcm"
        write_enhanced_ct(path, ct_volume(SHAPE), AFFINE)
        path.write_bytes(path.read_bytes()[:offset])
        made.append(path.parent)
    shutil.rmtree(base)
    return made


def _corpus(root: Path, *, full: bool) -> dict[str, list[Path]]:
    corpus = {}
    for suffix in (".nii", ".nii.gz", ".mha", ".nrrd"):
        folder = root / suffix.lstrip(".").replace(".", "_")
        folder.mkdir(parents=True)
        good = _good_file(folder, suffix)
        corpus[suffix] = _truncations_and_flips(good, folder, full=full)
        good.unlink()
    corpus["nifti header"] = _nifti_extremes(_mkdir(root / "nifti_header"), full=full)
    corpus["mha header"] = _mha_extremes(_mkdir(root / "mha_header"), full=full)
    corpus["dicom"] = _dicom_variants(_mkdir(root / "dicom"), full=full)
    return corpus


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


# --- inspect -----------------------------------------------------------------------------------

def _inspect_all(corpus: dict[str, list[Path]], capfd) -> dict[str, int]:
    codes: dict[str, int] = {}
    for kind, paths in corpus.items():
        for path in paths:
            code = main(["inspect", str(path)])  # any exception but SystemExit would fail the test here
            captured = capfd.readouterr()  # file-descriptor level: C libraries' messages count too
            assert code in (0, 2), (path, code)
            if code:
                lines = captured.err.strip().splitlines()
                assert len(lines) == 1 and lines[0].startswith("spinelesion inspect: error: "), (path, captured.err)
                assert "Traceback" not in captured.err
            codes[f"{kind}:{path.name}"] = code
    return codes


def test_inspect_fuzz_fast(tmp_path, capfd):
    codes = _inspect_all(_corpus(tmp_path, full=False), capfd)
    assert sum(c == 2 for c in codes.values()) >= len(codes) // 2  # most corruptions are caught


@pytest.mark.slow
def test_inspect_fuzz_full(tmp_path, capfd):
    if not FULL:
        pytest.skip("full fuzz suite: set SPINELESION_FUZZ=full")
    _inspect_all(_corpus(tmp_path, full=True), capfd)


# --- infer -------------------------------------------------------------------------------------

def _infer_all(tmp_path: Path, model: Path, *, full: bool) -> None:
    inputs = tmp_path / "in"
    corpus = _corpus(inputs, full=full)
    good = _good_file(_mkdir(inputs / "zz_good"), ".nii.gz")
    out = tmp_path / "out"
    result = run_batch(input_path=inputs, out_dir=out, model=model, device="cpu", progress=False, overlays=full)
    n_inputs = sum(len(v) for v in corpus.values()) + 1
    statuses = {p.name: json.loads((p / "status.json").read_text()) for p in out.iterdir() if p.is_dir()}
    assert len(statuses) >= n_inputs - 2, (len(statuses), n_inputs)  # a 0-byte DICOM is no DICOM: no case
    assert statuses["zz_good__good"]["status"] == "ok", statuses["zz_good__good"]  # other scans unaffected
    assert (out / "zz_good__good" / "labels.nii.gz").is_file()
    for case, status in statuses.items():
        assert "traceback" not in status and "tracebacks" not in status, (case, status)
        files = sorted(p.name for p in (out / case).iterdir())
        if status["status"] == "ok":
            assert {"labels.nii.gz", "measurements.json", "status.json"} <= set(files), (case, files)
        elif status["status"] == "partial":  # e.g. a flipped UID byte: no SEG, the rest written
            assert set(files) == {"status.json", *status["outputs"]}, (case, files)
            assert "\n" not in status["error"] and set(status["output_errors"]) == {"labels.seg.dcm"}, status
        else:
            assert status["status"] in ("failed", "skipped"), (case, status)
            error = status["error"]
            assert error and "\n" not in error and len(error) <= 500, (case, error)
            assert files == ["status.json"], (case, files)  # 0 partial files
    assert not [p for p in out.rglob("*") if is_temporary(p)]
    assert result.n_failed == sum(s["status"] == "failed" for s in statuses.values())
    assert good.is_file()


def test_infer_fuzz_fast(tmp_path, tiny_model):
    _infer_all(tmp_path, tiny_model, full=False)


@pytest.mark.slow
def test_infer_fuzz_full(tmp_path, tiny_model):
    if not FULL:
        pytest.skip("full fuzz suite: set SPINELESION_FUZZ=full")
    _infer_all(tmp_path, tiny_model, full=True)


# --- DICOM attributes removed one at a time ------------------------------------------------------

FAST_ATTRIBUTES = ("PatientSex", "PatientName", "PatientID", "StudyInstanceUID", "SeriesInstanceUID",
                   "FrameOfReferenceUID", "Modality", "SliceThickness", "RescaleIntercept", "SOPInstanceUID",
                   "ImagePositionPatient", "PixelSpacing", "BitsAllocated", "Rows")


def _attribute_corpus(root: Path, keywords) -> dict[str, Path]:
    base = root / "template"
    write_ct_series(base, ct_volume(SHAPE), OBLIQUE_AFFINE)
    folders = {}
    for keyword in keywords:
        folder = root / keyword
        shutil.copytree(base, folder)
        for path in folder.iterdir():
            ds = pydicom.dcmread(path)
            if keyword in ds:
                delattr(ds, keyword)
            ds.save_as(path)
        folders[keyword] = folder
    shutil.rmtree(base)
    return folders


def _all_attributes(tmp_path: Path) -> tuple[str, ...]:
    files = write_ct_series(tmp_path / "probe", ct_volume(SHAPE), OBLIQUE_AFFINE)
    ds = pydicom.dcmread(files[0])
    keywords = tuple(k for k in ds.dir() if k != "PixelData")
    shutil.rmtree(tmp_path / "probe")
    return keywords


def _load_and_seg(folders: dict[str, Path]) -> dict[str, str]:
    from spinelesion.io.seg import read_dicom_seg, save_dicom_seg

    outcome = {}
    for keyword, folder in folders.items():
        try:
            scan = load_scan(folder)
        except SpinelesionError as err:
            assert "\n" not in str(err), (keyword, str(err))
            outcome[keyword] = "load refused"
            continue
        labels = np.zeros(scan.shape, np.uint8)
        labels[4:9, 4:9, 2:5] = 3
        try:
            save_dicom_seg(labels, like=scan, path=folder.parent / f"{keyword}.seg.dcm")
        except SpinelesionError as err:
            assert "\n" not in str(err), (keyword, str(err))
            outcome[keyword] = "seg refused"
            continue
        assert np.array_equal(read_dicom_seg(folder.parent / f"{keyword}.seg.dcm", like=scan), labels), keyword
        outcome[keyword] = "ok"
    return outcome


def test_dicom_attributes_removed_one_at_a_time_fast(tmp_path):
    outcome = _load_and_seg(_attribute_corpus(tmp_path, FAST_ATTRIBUTES))
    for keyword in ("PatientSex", "PatientName", "PatientID", "SliceThickness", "StudyInstanceUID",
                    "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        assert outcome[keyword] == "ok", (keyword, outcome[keyword])  # type 2 / derivable: the SEG is written
    assert outcome["ImagePositionPatient"] == "load refused" and outcome["Rows"] == "load refused"


@pytest.mark.slow
def test_dicom_attributes_removed_one_at_a_time_full(tmp_path, tiny_model):
    if not FULL:
        pytest.skip("full fuzz suite: set SPINELESION_FUZZ=full")
    folders = _attribute_corpus(tmp_path / "in", _all_attributes(tmp_path))
    _load_and_seg(folders)
    for path in (tmp_path / "in").glob("*.seg.dcm"):
        path.unlink()
    run_batch(input_path=tmp_path / "in", out_dir=tmp_path / "out", model=tiny_model, device="cpu",
              progress=False, overlays=True)
    for status_file in (tmp_path / "out").glob("*/status.json"):
        status = json.loads(status_file.read_text())
        assert status["status"] in ("ok", "failed"), status  # never partial: the SEG copes or the load refuses
        assert "traceback" not in status and "tracebacks" not in status, status
        assert "\n" not in (status["error"] or "")


# --- property-based round trips ----------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402  (the dev extra)

PERMUTATIONS = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]


@st.composite
def grids(draw):
    """A random voxel grid: axis order and directions, obliquity up to 35 deg, spacing 0.3-5 mm."""
    permutation = draw(st.sampled_from(PERMUTATIONS))
    signs = [draw(st.sampled_from([-1.0, 1.0])) for _ in range(3)]
    direction = np.eye(3)[:, permutation] * np.array(signs)[None, :]
    angles = [draw(st.floats(-35, 35)) for _ in range(3)]
    if draw(st.booleans()):  # half the grids are not oblique
        angles = [0.0, 0.0, 0.0]
    direction = rotation("x", angles[0]) @ rotation("y", angles[1]) @ rotation("z", angles[2]) @ direction
    spacing = [draw(st.floats(0.3, 5.0)) for _ in range(3)]
    origin = [draw(st.floats(-300, 300)) for _ in range(3)]
    shape = tuple(draw(st.integers(4, 14)) for _ in range(3))
    return make_affine(direction, spacing, origin), shape


def _round_trip(affine: np.ndarray, shape, suffix: str, folder: Path) -> None:
    from spinelesion.inference.resample import labels_on_grid

    rng = np.random.default_rng(0)
    scan = Scan(array=rng.integers(-1000, 1500, shape).astype(np.float32), affine=affine, modality="CT")
    path = save_image(scan, path=folder / f"scan{suffix}")
    loaded = load_scan(path)
    assert loaded.shape == scan.shape and np.array_equal(loaded.array, scan.array)
    np.testing.assert_allclose(loaded.affine, affine, atol=1e-4, rtol=1e-6)
    # infer's resampling: network-grid probabilities (RAS, 1.5 mm) back onto the scan's grid
    corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                        for k in (0, shape[2] - 1)]) @ loaded.affine.T
    lo, hi = corners[:, :3].min(axis=0) - 3, corners[:, :3].max(axis=0) + 3
    net_affine = make_affine(np.eye(3), (1.5, 1.5, 1.5), lo)
    net_shape = tuple(int(n) for n in np.ceil((hi - lo) / 1.5) + 1)
    world = np.stack(np.meshgrid(*[np.arange(n) for n in net_shape], indexing="ij"), -1) * 1.5 + lo
    classes = (np.floor(world[..., 2] / 25.0).astype(int) % 3) + 1  # slabs 25 mm thick, classes 1..3
    probabilities = torch.nn.functional.one_hot(torch.as_tensor(classes), 7).permute(3, 0, 1, 2).float()
    labels = labels_on_grid(probabilities, source_affine=net_affine, target_affine=loaded.affine,
                            target_shape=loaded.shape)
    assert labels.shape == scan.shape
    centres = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1) @ loaded.affine[:3, :3].T \
        + loaded.affine[:3, 3]
    expected = (np.floor(centres[..., 2] / 25.0).astype(int) % 3) + 1
    inside = np.abs(((centres[..., 2] + 12.5) % 25.0) - 12.5) > 1.6  # away from the slab borders
    assert np.array_equal(labels[inside], expected[inside])
    out = save_labels(labels, like=loaded, path=folder / f"labels{suffix}")
    back = load_scan(out)
    assert back.shape == scan.shape and np.array_equal(back.array, labels)
    np.testing.assert_allclose(back.affine, affine, atol=1e-4, rtol=1e-6)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(grid=grids(), suffix=st.sampled_from([".nii.gz", ".nii", ".mha", ".nrrd"]))
def test_round_trip_lands_on_the_input_grid_fast(tmp_path_factory, grid, suffix):
    affine, shape = grid
    _round_trip(affine, shape, suffix, tmp_path_factory.mktemp("rt"))


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(grid=grids(), suffix=st.sampled_from([".nii.gz", ".nii", ".mha", ".nrrd"]))
def test_round_trip_lands_on_the_input_grid_full(tmp_path_factory, grid, suffix):
    if not FULL:
        pytest.skip("full fuzz suite: set SPINELESION_FUZZ=full")
    affine, shape = grid
    _round_trip(affine, shape, suffix, tmp_path_factory.mktemp("rt"))


@settings(max_examples=4 if not FULL else 40, deadline=None, derandomize=True)
@given(grid=grids())
def test_predictor_output_lands_on_the_input_grid(tmp_path_factory, tiny_model, grid):
    from spinelesion.inference.predictor import Predictor

    affine, shape = grid
    scan = Scan(array=ct_volume(tuple(max(n, 6) for n in shape)), affine=affine, modality="CT", source="h")
    prediction = Predictor(model=tiny_model, device="cpu").predict(scan)
    assert prediction.labels.shape == scan.shape
    out = save_labels(prediction.labels, like=scan, path=tmp_path_factory.mktemp("p") / "labels.nii.gz")
    back = load_scan(out)
    np.testing.assert_allclose(back.affine, affine, atol=1e-4, rtol=1e-6)
    assert np.array_equal(back.array, prediction.labels)
