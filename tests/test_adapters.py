"""Dataset adapters against tiny stand-ins written in each dataset's own layout (tests/standins.py)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import standins  # noqa: E402

from spinelesion.data.adapters import ADAPTERS, Case, get_adapter, load_case  # noqa: E402
from spinelesion.io.grid import place_on_grid  # noqa: E402
from spinelesion.data.adapters.vertebra_split import FALLBACK_BODY_FRACTION, split_vertebrae  # noqa: E402
from spinelesion.errors import ConfigError, DatasetError, LabelMapError, ScanLoadError, SpinelesionError  # noqa: E402
from spinelesion.io.scan import DicomReference, Scan  # noqa: E402
from spinelesion.labels import NUM_CLASSES  # noqa: E402

SHIFTED_2MM = standins.AFFINE + np.array([[0, 0, 0, 2.0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


def assert_split(labels: np.ndarray, col: standins.Column, index: int) -> None:
    """The body drawn is labelled 1 and the posterior elements drawn 2, nearly everywhere.

    The plane through the canal's front edge calls the pedicle roots beside the body's back
    wall "body": about 16 % of the stand-in's posterior voxels, hence the 0.8.
    """
    body, posterior = col.bodies[index], col.posteriors[index]
    assert (labels[body] == 1).mean() >= 0.95
    assert (labels[posterior] == 2).mean() >= 0.8
    assert (labels[col.canal & ~col.vertebra(0) & ~col.vertebra(1)] == 1).sum() == 0


# ---------------------------------------------------------------- registry


def test_registry_names_and_unknown():
    from spinelesion.training.config import DataSource, _Invalid

    assert set(ADAPTERS) == {"msd", "verse", "totalsegmentator", "spider", "spinemets", "tissue", "labelmaps"}
    for name in ADAPTERS:  # the config knows every adapter, and only those
        DataSource(adapter=name, root="x").check()
    with pytest.raises(_Invalid, match="unknown adapter"):
        DataSource(adapter="versee", root="x").check()
    for name in ADAPTERS:
        adapter = get_adapter(name)
        assert adapter.name == name
        assert set(adapter.annotated_classes) <= set(range(NUM_CLASSES)) and 0 in adapter.annotated_classes
    with pytest.raises(ConfigError, match="verse"):
        get_adapter("versee")


# ---------------------------------------------------------------- vertebra split


def test_split_matches_drawn_body_and_posterior_elements():
    col = standins.column()
    instances = np.zeros(standins.SHAPE, dtype=np.int32)
    instances[col.vertebra(0)], instances[col.vertebra(1)] = 20, 21
    labels = split_vertebrae(instances, affine=standins.AFFINE)
    assert_split(labels, col, 0)
    assert_split(labels, col, 1)
    assert set(np.unique(labels)) == {0, 1, 2}
    with_canal = split_vertebrae(instances, affine=standins.AFFINE, canal=col.canal)
    assert_split(with_canal, col, 0)


@pytest.mark.parametrize("axes, flips", [((0, 1, 2), (True, True, False)),  # LPS
                                         ((1, 2, 0), (True, False, False))])  # P S R-ish permutation
def test_split_follows_the_patient_not_the_voxel_order(axes, flips):
    """The same anatomy stored LPS or permuted (PSR-like) gets the same labels in the world."""
    col = standins.column()
    instances = np.zeros(standins.SHAPE, dtype=np.int32)
    instances[col.vertebra(0)] = 5
    reference = split_vertebrae(instances, affine=standins.AFFINE)
    stored, affine = _reorient(instances, axes, flips)
    labels = split_vertebrae(stored, affine=affine)
    back = _undo(labels, axes, flips)
    np.testing.assert_array_equal(back, reference)


def test_split_oblique_rotation_still_finds_the_body():
    col = standins.column()
    instances = np.zeros(standins.SHAPE, dtype=np.int32)
    instances[col.vertebra(1)] = 3
    angle = np.deg2rad(12)  # axial rotation about the superior axis
    affine = standins.AFFINE.copy()
    affine[:2, :2] = 2.0 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    labels = split_vertebrae(instances, affine=affine)
    assert (labels[col.bodies[1]] == 1).mean() >= 0.9
    assert (labels[col.posteriors[1]] == 2).mean() >= 0.75


def test_split_without_canal_falls_back_and_atlas_is_posterior():
    solid = np.zeros(standins.SHAPE, dtype=np.int32)
    solid[8:16, 2:22, 5:10] = 7  # no hole: antero-posterior extent y 2..21
    solid[8:16, 2:22, 14:19] = 1  # the atlas
    labels = split_vertebrae(solid, affine=np.eye(4), posterior_only=(1,))
    body_rows = np.unique(np.nonzero(labels[:, :, 5:10] == 1)[1])
    depth = 21 - 2
    assert body_rows.min() > 21 - FALLBACK_BODY_FRACTION * depth - 1 and body_rows.max() == 21
    assert set(np.unique(labels[:, :, 14:19])) == {0, 2}


def test_place_on_grid_handles_flips_and_partial_cover_and_refuses_other_spacing(tmp_path):
    like = Scan(array=np.zeros((6, 5, 4), np.float32), affine=np.eye(4))
    truth = np.arange(6 * 5 * 4).reshape(6, 5, 4)
    # source stores z reversed and only slices 1..3 of the image
    part = truth[:, :, 1:4][:, :, ::-1]
    affine = np.eye(4)
    affine[2, 2], affine[2, 3] = -1.0, 3.0
    placed = place_on_grid(part, affine=affine, like=like, path=tmp_path / "x")
    np.testing.assert_array_equal(placed[:, :, 1:4], truth[:, :, 1:4])
    assert not placed[:, :, 0].any()
    with pytest.raises(LabelMapError, match="do not lie on the image grid"):
        place_on_grid(part, affine=np.diag([1.0, 1.0, 1.1, 1.0]), like=like, path=tmp_path / "x")


# ---------------------------------------------------------------- MSD datalist


def test_msd_cases_and_labels(tmp_path):
    root = standins.msd(tmp_path / "synth")
    adapter = get_adapter("msd")
    cases = adapter.find_cases(root)
    assert [(c.case_id, c.split, c.modality) for c in cases] == [("case_000", "train", "CT"),
                                                                 ("case_001", "validation", "CT")]
    scan, labels, annotated = load_case(cases[0])
    written = standins.column()
    assert labels.dtype == np.uint8 and labels.shape == scan.shape
    assert (labels[written.disc] == 6).all() and (labels[written.bodies[0]] == 1).all()
    assert annotated.tolist() == [True] * NUM_CLASSES
    assert adapter.find_cases(root / "dataset.json") == cases


def test_msd_bad_inputs(tmp_path):
    bad = np.zeros(standins.SHAPE, dtype=np.uint8)
    bad[3, 3, 3] = 9
    root = standins.msd(tmp_path / "bad_value", label=bad)
    case = get_adapter("msd").find_cases(root)[0]
    with pytest.raises(LabelMapError, match=r"case_000\.nii\.gz: label values 9"):
        load_case(case)

    root = standins.msd(tmp_path / "bad_table", labels_table={"0": "background", "1": "liver"})
    with pytest.raises(LabelMapError, match="dataset.json: 'labels'"):
        get_adapter("msd").find_cases(root)

    root = standins.msd(tmp_path / "missing")
    (root / "imagesTr" / "case_001.nii.gz").unlink()
    with pytest.raises(ScanLoadError, match=r"imagesTr/case_001\.nii\.gz: image not found"):
        get_adapter("msd").find_cases(root)
    with pytest.raises(SpinelesionError, match="nowhere: MSD dataset folder not found"):
        get_adapter("msd").find_cases(tmp_path / "nowhere")
    (tmp_path / "no_json").mkdir()
    with pytest.raises(LabelMapError, match=r"no_json/dataset\.json: datalist dataset\.json not found"):
        get_adapter("msd").find_cases(tmp_path / "no_json")

    root = standins.msd(tmp_path / "grid")
    standins.write_nifti(np.zeros(standins.SHAPE, np.uint8), root / "labelsTr" / "case_000.nii.gz",
                         affine=SHIFTED_2MM)
    case = get_adapter("msd").find_cases(root)[0]
    with pytest.raises(LabelMapError, match=r"labelsTr/case_000\.nii\.gz: label and image grids differ"):
        load_case(case)


def test_label_file_in_another_axis_order_is_put_in_the_image_order(tmp_path):
    """A mask storing the image's voxels in another axis order/direction (dcm2niix LAS vs a loader's
    LPS) trains as if written on the image's grid; a shifted mask is still refused (test above)."""
    import nibabel as nib

    root = standins.msd(tmp_path / "order")
    case = get_adapter("msd").find_cases(root)[0]
    reference = load_case(case)[1]
    label_path = root / "labelsTr" / "case_000.nii.gz"
    img = nib.load(label_path)
    other = nib.Nifti1Image(np.asarray(img.dataobj), img.affine).as_reoriented(np.array([[2, -1], [0, 1], [1, -1]]))
    assert not np.allclose(other.affine, img.affine)
    nib.save(other, label_path)
    np.testing.assert_array_equal(load_case(case)[1], reference)


# ---------------------------------------------------------------- VerSe


def test_verse_cases_and_labels(tmp_path):
    root = standins.verse(tmp_path / "verse20")
    adapter = get_adapter("verse")
    (case,) = adapter.find_cases(root)
    assert case.case_id == "sub-gl003_dir-ax" and case.split == "train" and case.modality == "CT"
    assert case.label.name == "sub-gl003_dir-ax_seg-vert_msk.nii.gz"
    scan, labels, annotated = load_case(case)
    col = standins.column()
    assert set(np.unique(labels[col.vertebra(0)])) == {2}  # value 1 = C1: no body
    assert_split(labels, col, 1)  # value 28 = T13
    assert not labels[~(col.vertebra(0) | col.vertebra(1))].any()
    assert annotated.tolist() == [True, True, True, False, False, False, False]
    # the split folder itself is a valid root too
    assert adapter.find_cases(root / "dataset-01training")[0].case_id == case.case_id


def test_verse_bad_inputs(tmp_path):
    col = standins.column()
    mask = np.zeros(standins.SHAPE, dtype=np.uint8)
    mask[col.vertebra(0)] = 26  # sacrum: "not labeled in this dataset"
    root = standins.verse(tmp_path / "value", mask=mask)
    (case,) = get_adapter("verse").find_cases(root)
    with pytest.raises(LabelMapError, match=r"seg-vert_msk\.nii\.gz: label values \[26\]"):
        load_case(case)

    root = standins.verse(tmp_path / "grid", mask_affine=SHIFTED_2MM)
    (case,) = get_adapter("verse").find_cases(root)
    with pytest.raises(LabelMapError, match=r"seg-vert_msk\.nii\.gz: label and image grids differ"):
        load_case(case)

    root = standins.verse(tmp_path / "missing")
    shutil.rmtree(root / "dataset-01training" / "derivatives")
    with pytest.raises(LabelMapError, match=r"derivatives/sub-gl003/sub-gl003_dir-ax_seg-vert_msk\.nii\.gz"):
        get_adapter("verse").find_cases(root)
    with pytest.raises(DatasetError, match="VerSe dataset folder not found"):
        get_adapter("verse").find_cases(tmp_path / "nowhere")


# ---------------------------------------------------------------- TotalSegmentator


def test_totalsegmentator_cases_and_labels(tmp_path):
    root = standins.totalsegmentator(tmp_path / "ts")
    cases = get_adapter("totalsegmentator").find_cases(root)
    assert [(c.case_id, c.split) for c in cases] == [("s0000", "train"), ("s0001", "validation")]
    scan, labels, annotated = load_case(cases[0])
    col = standins.column()
    assert_split(labels, col, 0)
    assert_split(labels, col, 1)
    cord = labels == 4
    assert cord.any() and (cord <= col.canal).all()
    assert set(np.unique(labels)) == {0, 1, 2, 4}
    assert annotated.tolist() == [True, True, True, False, True, False, False]


def test_totalsegmentator_bad_inputs(tmp_path):
    root = standins.totalsegmentator(tmp_path / "value", cord_values=2)
    case = get_adapter("totalsegmentator").find_cases(root)[0]
    with pytest.raises(LabelMapError, match=r"spinal_cord\.nii\.gz: a binary mask"):
        load_case(case)

    root = standins.totalsegmentator(tmp_path / "grid")
    standins.write_nifti(np.zeros(standins.SHAPE, np.uint8), root / "s0000/segmentations/vertebrae_T5.nii.gz",
                         affine=SHIFTED_2MM)
    case = get_adapter("totalsegmentator").find_cases(root)[0]
    with pytest.raises(LabelMapError, match=r"vertebrae_T5\.nii\.gz: label and image grids differ"):
        load_case(case)

    root = standins.totalsegmentator(tmp_path / "missing")
    (root / "s0001/segmentations/vertebrae_S1.nii.gz").unlink()
    with pytest.raises(LabelMapError, match=r"s0001/segmentations/vertebrae_S1\.nii\.gz"):
        get_adapter("totalsegmentator").find_cases(root)


# ---------------------------------------------------------------- SPIDER


def test_spider_cases_and_labels(tmp_path):
    root = standins.spider(tmp_path / "spider")
    (case,) = get_adapter("spider").find_cases(root)
    assert (case.case_id, case.split, case.modality) == ("1_t2", "validation", "MR")
    scan, labels, annotated = load_case(case)
    assert scan.modality == "MR"
    col = standins.column()
    assert (labels[col.disc] == 6).all()
    assert_split(labels, col, 0)  # value 1
    assert_split(labels, col, 1)  # value 102, partly visible vertebra
    assert not labels[col.canal & ~col.vertebra(0) & ~col.vertebra(1)].any()  # canal: not mapped
    assert annotated.tolist() == [True, True, True, False, False, False, True]


def test_spider_bad_inputs(tmp_path):
    root = standins.spider(tmp_path / "value", extra_value=150)
    (case,) = get_adapter("spider").find_cases(root)
    with pytest.raises(LabelMapError, match=r"masks/1_t2\.mha: label values \[150\]"):
        load_case(case)

    root = standins.spider(tmp_path / "grid")
    standins.write_mha(np.zeros(standins.SHAPE, np.uint8), root / "masks" / "1_t2.mha",
                       affine=np.diag([1.0, 1.0, 1.2, 1.0]))
    (case,) = get_adapter("spider").find_cases(root)
    with pytest.raises(LabelMapError, match=r"masks/1_t2\.mha: label and image grids differ"):
        load_case(case)

    root = standins.spider(tmp_path / "missing")
    (root / "masks" / "1_t2.mha").unlink()
    with pytest.raises(LabelMapError, match=r"masks/1_t2\.mha: SPIDER mask for 1_t2\.mha not found"):
        get_adapter("spider").find_cases(root)


# ---------------------------------------------------------------- Spine-Mets-CT-SEG


def _like_ct(case: Case, col: standins.Column, affine: np.ndarray | None = None) -> Scan:
    """The CT as the stand-in wrote it (RAS voxel (i, j, k) at (2i, 2j, 2k) mm), without the loader."""
    import pydicom

    files = tuple(sorted(Path(case.image).glob("*.dcm")))
    header = pydicom.dcmread(files[0], stop_before_pixels=True)
    reference = DicomReference(study_instance_uid=str(header.StudyInstanceUID),
                               series_instance_uid=str(header.SeriesInstanceUID), slice_files=files)
    return Scan(array=col.image, affine=standins.AFFINE if affine is None else affine, modality="CT",
                dicom=reference)


def test_spinemets_cases_and_labels(tmp_path):
    root, col = standins.spinemets(tmp_path / "tcia")
    (case,) = get_adapter("spinemets").find_cases(tmp_path / "tcia")
    assert case.case_id == "10250" and case.label.name == "1-1.dcm"
    assert case.annotated_classes == (0, 1, 2, 3)
    labels = get_adapter("spinemets").load_labels(case, like=_like_ct(case, col))
    lesion = standins.lesion_mask()
    assert (labels[lesion] == 3).all() and (labels == 3).sum() == lesion.sum()
    bodies_without_lesion = [col.bodies[0] & ~lesion, col.bodies[1]]
    for body in bodies_without_lesion:
        assert (labels[body] == 1).mean() >= 0.95
    assert (labels[col.posteriors[0] | col.posteriors[1]] == 2).mean() >= 0.8


def test_spinemets_without_lesion_segment_leaves_lesion_unannotated(tmp_path):
    standins.spinemets(tmp_path / "tcia", with_lesion=False)
    (case,) = get_adapter("spinemets").find_cases(tmp_path / "tcia")
    assert case.annotated_classes == (0, 1, 2)


def test_spinemets_load_case_through_the_dicom_loader(tmp_path):
    root, col = standins.spinemets(tmp_path / "tcia")
    (case,) = get_adapter("spinemets").find_cases(root)
    scan, labels, annotated = load_case(case)
    lesion = standins.lesion_mask()
    # whatever voxel order the loader chose, the lesion must sit at the same world points
    world = scan.affine @ np.vstack([np.array(np.nonzero(labels == 3)), np.ones((1, int((labels == 3).sum())))])
    drawn = np.vstack([np.array(np.nonzero(lesion)), np.ones((1, int(lesion.sum())))])
    assert sorted(map(tuple, np.round(world[:3].T, 3))) == sorted(map(tuple, 2.0 * drawn[:3].T))
    assert annotated.tolist() == [True, True, True, True, False, False, False]


def test_spinemets_bad_inputs(tmp_path):
    standins.spinemets(tmp_path / "unknown", extra_segment="Liver")
    with pytest.raises(LabelMapError, match=r"1-1\.dcm: segment 4 'Liver'"):
        get_adapter("spinemets").find_cases(tmp_path / "unknown")

    root, col = standins.spinemets(tmp_path / "grid")
    (case,) = get_adapter("spinemets").find_cases(root)
    other_spacing = np.diag([1.0, 1.0, 1.5, 1.0])
    with pytest.raises(LabelMapError, match=r"1-1\.dcm: label and image grids differ: label voxels do not lie on the image grid"):
        get_adapter("spinemets").load_labels(case, like=_like_ct(case, col, other_spacing))

    like = _like_ct(case, col)
    wrong_series = Scan(array=like.array, affine=like.affine, dicom=DicomReference(
        study_instance_uid="1.2", series_instance_uid="1.2.3", slice_files=like.dicom.slice_files))
    with pytest.raises(LabelMapError, match=r"1-1\.dcm: references series .* not the image's series 1\.2\.3"):
        get_adapter("spinemets").load_labels(case, like=wrong_series)

    ct_folder = case.image
    shutil.rmtree(ct_folder)
    with pytest.raises(LabelMapError, match=r"1-1\.dcm: the CT series it references .* is not under"):
        get_adapter("spinemets").find_cases(root)
    with pytest.raises(LabelMapError, match="no DICOM SEG files"):
        get_adapter("spinemets").find_cases(_empty(tmp_path))


def _empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text(json.dumps({}))
    return folder


# ---------------------------------------------------------------- helpers


def _reorient(array: np.ndarray, axes: tuple[int, ...], flips: tuple[bool, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Store an array on standins.AFFINE (RAS, 2 mm) with its axes permuted then flipped; return
    it and the affine that keeps every voxel at its world point."""
    stored = np.transpose(array, axes)
    affine = np.zeros((4, 4))
    affine[3, 3] = 1.0
    for new_axis, old_axis in enumerate(axes):
        if flips[new_axis]:
            stored = np.flip(stored, axis=new_axis)
            affine[old_axis, new_axis] = -2.0
            affine[old_axis, 3] = 2.0 * (array.shape[old_axis] - 1)
        else:
            affine[old_axis, new_axis] = 2.0
    return np.ascontiguousarray(stored), affine


def _undo(stored: np.ndarray, axes: tuple[int, ...], flips: tuple[bool, ...]) -> np.ndarray:
    for new_axis, flip in enumerate(flips):
        if flip:
            stored = np.flip(stored, axis=new_axis)
    return np.transpose(stored, np.argsort(axes))


@pytest.mark.parametrize("table, expected", [({"0": "CT"}, "CT"), ({"0": "MR-T1"}, "MR"), ({"0": "T2"}, "MR"),
                                             ({"0": "CT", "1": "PET"}, None), (None, None)])
def test_msd_modality_table(table, expected):
    from spinelesion.data.adapters.msd import _modality

    assert _modality(table) == expected
