"""Tiny stand-ins of public spine datasets, written in each dataset's own on-disk layout.

Every volume is 24^3 voxels of 2 mm (so the drawn canal, radius 2 voxels, has about 50 mm^2,
above the smallest cross-section the vertebra split accepts as a canal) and holds two simple vertebrae along
the z (superior) axis: a cylindrical body in front (+y, anterior in RAS), a ring around the
canal behind it and a spinous process, with a disc between them. ``column()`` returns the
truth masks so tests can compare what an adapter made against what was drawn.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHAPE = (24, 24, 24)
#: RAS+, 2 mm isotropic, voxel (0, 0, 0) at the world origin.
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
#: z ranges (inclusive start, exclusive end) of the two vertebrae and of the disc between them.
VERTEBRA_Z = ((3, 10), (13, 20))
DISC_Z = (10, 13)


@dataclass
class Column:
    """Truth of the drawn column, each (24, 24, 24) in RAS voxel order."""

    bodies: list[np.ndarray]  # bool, one per vertebra
    posteriors: list[np.ndarray]  # bool, one per vertebra
    canal: np.ndarray  # bool, the whole canal (also between vertebrae)
    disc: np.ndarray  # bool
    image: np.ndarray  # float32, CT-like HU

    def vertebra(self, index: int) -> np.ndarray:
        return self.bodies[index] | self.posteriors[index]


def column() -> Column:
    """Two vertebrae: body radius 4 around (12, 15), canal radius 2 around (12, 9), ring 2..4
    around the canal behind the body, spinous process y 3..5 (voxel indices, RAS order)."""
    x, y, z = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    body_disk = (x - 12) ** 2 + (y - 15) ** 2 <= 16
    canal_r2 = (x - 12) ** 2 + (y - 9) ** 2
    ring = (canal_r2 > 4) & (canal_r2 <= 16) & ~body_disk
    spinous = (abs(x - 12) <= 1) & (y >= 3) & (y <= 5)
    bodies, posteriors = [], []
    for z0, z1 in VERTEBRA_Z:
        level = (z >= z0) & (z < z1)
        bodies.append(body_disk & level)
        posteriors.append((ring | spinous) & level)
    canal = (canal_r2 <= 4) & ~body_disk & (z >= 1) & (z < 23)
    disc = body_disk & (z >= DISC_Z[0]) & (z < DISC_Z[1])
    image = np.full(SHAPE, 40.0, dtype=np.float32)
    image[:, :2] = -1000.0
    for mask in bodies + posteriors:
        image[mask] = 700.0
    image[disc] = 80.0
    image[canal] = 10.0
    return Column(bodies=bodies, posteriors=posteriors, canal=canal, disc=disc, image=image)


def write_nifti(array: np.ndarray, path: Path, *, affine: np.ndarray = AFFINE) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(array), affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    nib.save(img, str(path))
    return path


def write_mha(array: np.ndarray, path: Path, *, affine: np.ndarray = AFFINE) -> Path:
    """MHA with the LPS geometry ITK expects for a RAS+ ``affine``."""
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    img = sitk.GetImageFromArray(np.transpose(np.asarray(array), (2, 1, 0)))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in lps[:3, 3]))
    img.SetDirection(tuple(float(d) for d in (lps[:3, :3] / spacing).ravel()))
    sitk.WriteImage(img, str(path))
    return path


def verse(root: Path, *, mask: np.ndarray | None = None, mask_affine: np.ndarray = AFFINE) -> Path:
    """VerSe 2020 subject layout: C1 (value 1) below T13 (value 28) in sub-gl003, training split."""
    col = column()
    if mask is None:
        mask = np.zeros(SHAPE, dtype=np.uint8)
        mask[col.vertebra(0)] = 1
        mask[col.vertebra(1)] = 28
    split = root / "dataset-01training"
    write_nifti(col.image.astype(np.int16), split / "rawdata/sub-gl003/sub-gl003_dir-ax_ct.nii.gz")
    write_nifti(mask.astype(np.uint8), split / "derivatives/sub-gl003/sub-gl003_dir-ax_seg-vert_msk.nii.gz",
                affine=mask_affine)
    return root


def totalsegmentator(root: Path, *, cord_values: int = 1) -> Path:
    """Two subjects s0000 (train) and s0001 (val) with every v2 mask the adapter reads."""
    from spinelesion.data.adapters.totalseg import VERTEBRAE

    col = column()
    for case in ("s0000", "s0001"):
        write_nifti(col.image.astype(np.int16), root / case / "ct.nii.gz")
        seg = root / case / "segmentations"
        for level in VERTEBRAE:
            mask = np.zeros(SHAPE, dtype=np.uint8)
            if level == "L4":
                mask[col.vertebra(0)] = 1
            elif level == "L3":
                mask[col.vertebra(1)] = 1
            write_nifti(mask, seg / f"vertebrae_{level}.nii.gz")
        cord = np.zeros(SHAPE, dtype=np.uint8)
        cord[col.canal & ((np.arange(24)[:, None, None] - 12) ** 2 + (np.arange(24)[None, :, None] - 9) ** 2
                          <= 1)] = cord_values
        write_nifti(cord, seg / "spinal_cord.nii.gz")
        write_nifti(np.zeros(SHAPE, dtype=np.uint8), seg / "sacrum.nii.gz")
    (root / "meta.csv").write_text("image_id;age;gender;institute;study_type;split\n"
                                   "s0000;60;m;A;ct abdomen;train\ns0001;55;f;B;ct thorax;val\n")
    return root


def spider(root: Path, *, extra_value: int | None = None) -> Path:
    """SPIDER: 1_t2.mha with vertebrae 1 (bottom) and 102 (partly visible), canal 100, disc 201."""
    col = column()
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[col.canal] = 100
    mask[col.vertebra(0)] = 1
    mask[col.vertebra(1)] = 102
    mask[col.disc] = 201
    if extra_value is not None:
        mask[0, 0, 0] = extra_value
    mr = np.where(col.canal, 900.0, np.where(col.disc, 600.0, 200.0)).astype(np.float32)
    write_mha(mr, root / "images" / "1_t2.mha")
    write_mha(mask, root / "masks" / "1_t2.mha")
    with open(root / "overview.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["new_file_name", "subset", "num_vertebrae"])
        writer.writerow(["1_t2", "validation", "2"])
    return root


def msd(root: Path, *, label: np.ndarray | None = None, labels_table: dict | None = None) -> Path:
    """What ``spinelesion synth`` writes: imagesTr/, labelsTr/, dataset.json with both splits."""
    from spinelesion.labels import LABEL_NAMES

    col = column()
    if label is None:
        label = np.zeros(SHAPE, dtype=np.uint8)
        label[col.bodies[0] | col.bodies[1]] = 1
        label[col.posteriors[0] | col.posteriors[1]] = 2
        label[col.disc] = 6
        label[col.canal] = 5
    entries = {"training": [], "validation": []}
    for key, case in (("training", "case_000"), ("validation", "case_001")):
        write_nifti(col.image, root / "imagesTr" / f"{case}.nii.gz")
        write_nifti(label.astype(np.uint8), root / "labelsTr" / f"{case}.nii.gz")
        entries[key].append({"image": f"imagesTr/{case}.nii.gz", "label": f"labelsTr/{case}.nii.gz"})
    table = {str(k): v for k, v in LABEL_NAMES.items()} if labels_table is None else labels_table
    (root / "dataset.json").write_text(json.dumps({"name": "phantoms", "modality": {"0": "CT"},
                                                   "labels": table, **entries}))
    return root


def dicom_ct_series(folder: Path, *, image: np.ndarray) -> list:
    """Write ``image`` (X, Y, Z) as an axial CT series, one file per z, whose voxel (i, j, k) sits
    at RAS (2i, 2j, 2k) mm (LPS (-2i, -2j, 2k)): rows run along -x LPS, columns along -y LPS.

    Returns the pydicom datasets (for building a SEG on them).
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    datasets = []
    for k in range(image.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientID, ds.PatientName = "CT", "10250", "Standin^Case"
        ds.PatientBirthDate, ds.PatientSex, ds.StudyDate, ds.StudyTime = "", "O", "20090404", "120000"
        ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyID = "", "", "1"
        ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = 5, k + 1, "standin"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
        ds.ImageOrientationPatient = [-1.0, 0.0, 0.0, 0.0, -1.0, 0.0]
        ds.PixelSpacing, ds.SliceThickness = [2.0, 2.0], 2.0
        ds.Rows, ds.Columns = image.shape[1], image.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024.0, 1.0, "HU"
        pixels = (image[:, :, k].T + 1024).astype(np.int16)  # (rows=y, cols=x)
        ds.PixelData = pixels.tobytes()
        pydicom.dcmwrite(folder / f"1-{k + 1:03d}.dcm", ds, enforce_file_format=True)
        datasets.append(ds)
    return datasets


def dicom_seg(path: Path, *, sources: list, segments: list[tuple[str, str, np.ndarray]]) -> Path:
    """A BINARY DICOM SEG on ``sources`` with one segment per (label, kind, (X, Y, Z) mask);
    kind is "vertebra", "lesion" or "other" (sets the SNOMED property type)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    descriptions, frames = [], []
    for number, (label, kind, mask) in enumerate(segments, start=1):
        category, prop = {"vertebra": (codes.SCT.AnatomicalStructure, codes.SCT.Vertebra),
                          "lesion": (codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm),
                          "other": (codes.SCT.AnatomicalStructure, codes.SCT.Liver)}[kind]
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=label, segmented_property_category=category,
            segmented_property_type=prop, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL))
        frames.append(np.transpose(mask, (2, 1, 0)))  # (frames=z, rows=y, cols=x)
    pixel_array = np.stack(frames, axis=-1).astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=generate_uid(), series_number=300, sop_instance_uid=generate_uid(),
        instance_number=1, manufacturer="standin", manufacturer_model_name="standin",
        software_versions="0", device_serial_number="0")
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)
    return path


def spinemets(root: Path, *, with_lesion: bool = True, extra_segment: str | None = None) -> tuple[Path, Column]:
    """NBIA download layout: Spine-Mets-CT-SEG/10250/<study>/<CT series>/ and <SEG series>/1-1.dcm.

    Segments: "L1 vertebra" (lower vertebra), "L2 vertebra" (upper), and with ``with_lesion`` a
    "Lesion" segment of 3x3x3 voxels inside the L1 body.
    """
    col = column()
    study = root / "Spine-Mets-CT-SEG" / "10250" / "04-04-2009-NA-SpineSPINEBONESBRT Adult-04098"
    sources = dicom_ct_series(study / "5.000000-SKINTOSKINSIM0.5MM10250a iMAR-27242", image=col.image)
    segments = [("L1 vertebra", "vertebra", col.vertebra(0)), ("L2 vertebra", "vertebra", col.vertebra(1))]
    if with_lesion:
        segments.append(("Lesion", "lesion", lesion_mask()))
    if extra_segment is not None:
        segments.append((extra_segment, "other", col.disc))
    dicom_seg(study / "300.000000-Spine Segmentation-86171" / "1-1.dcm", sources=sources, segments=segments)
    return root, col


def lesion_mask() -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[11:14, 14:17, 5:8] = True
    return mask
