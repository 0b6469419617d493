"""The faster code paths of issue 6 give what the plain numpy/scipy/torch/nibabel calls give.

Each test computes the straightforward reference (the code these paths replaced) on a small
volume and compares: bit-identical where the arithmetic is the same, within rounding where only
the summation order changes.
"""

from __future__ import annotations

import gzip
import sys
from types import SimpleNamespace

import cc3d
import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from spinelesion import labels as L
from spinelesion.errors import ScanLoadError
from spinelesion.inference.resample import class_argmax
from spinelesion.io.layout import as_c_order, as_fortran_order
from spinelesion.io.load import load_scan
from spinelesion.io.save import save_labels
from spinelesion.io.scan import Scan
from spinelesion.measure import geometry as G
from spinelesion.measure.lesions import _touching_canal, find_lesions
from spinelesion.measure.settings import MeasureSettings

OBLIQUE = np.array([[0.0, 0.0, -1.2, 40.0], [0.69, 0.12, 0.0, -20.0], [-0.1, 0.7, 0.05, 7.5], [0, 0, 0, 1]])


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.float64, np.uint8])
def test_c_order_copy_equals_numpy(dtype):
    rng = np.random.default_rng(0)
    volume = rng.normal(0, 200, (13, 17, 21)).astype(dtype)
    for array in (np.asfortranarray(volume), volume.transpose(2, 0, 1), volume[::2, 1:, ::3],
                  np.asfortranarray(rng.normal(size=(5, 6, 19, 3)))[..., 1]):
        for out_dtype in (np.float32, dtype):
            got = as_c_order(array, dtype=out_dtype)
            assert got.flags.c_contiguous and got.dtype == out_dtype
            assert np.array_equal(got, np.ascontiguousarray(array.astype(out_dtype)))


def test_fortran_order_copy_equals_numpy():
    labels = np.random.default_rng(1).integers(0, 7, (40, 11, 23))
    for array in (labels, labels[3:37, 1:, ::2], np.asfortranarray(labels)[3:37], labels.transpose(2, 1, 0)):
        got = as_fortran_order(array, dtype=np.uint8)
        assert got.flags.f_contiguous and np.array_equal(got, array.astype(np.uint8))


def _nifti(tmp_path, name, array, affine=OBLIQUE, slope=None):
    img = nib.Nifti1Image(array, affine)
    if slope is not None:
        img.header.set_slope_inter(*slope)
    path = tmp_path / name
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("stored", ["float32", "int16_scaled", "uint8"])
def test_gzip_nifti_same_with_and_without_isal(tmp_path, monkeypatch, stored):
    rng = np.random.default_rng(2)
    data = rng.normal(0, 300, (24, 20, 18))
    array = {"float32": data.astype(np.float32), "int16_scaled": data.astype(np.int16),
             "uint8": np.abs(data).astype(np.uint8)}[stored]
    path = _nifti(tmp_path, "scan.nii.gz", array, slope=(0.5, -1024.0) if stored == "int16_scaled" else None)
    expected = np.asarray(nib.load(str(path)).dataobj).astype(np.float32)
    fast = load_scan(path)
    monkeypatch.setitem(sys.modules, "isal", None)  # import isal now fails: nibabel's own reader
    plain = load_scan(path)
    assert np.array_equal(fast.array, expected) and np.array_equal(plain.array, expected)
    assert fast.array.flags.c_contiguous and np.array_equal(fast.affine, plain.affine)


def test_corrupt_gzip_nifti_is_a_load_error(tmp_path):
    path = _nifti(tmp_path, "scan.nii.gz", np.random.default_rng(3).normal(size=(30, 30, 30)).astype(np.float32))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)  # damage the deflate stream mid-file
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(bytes(raw))
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(path.read_bytes()[: len(raw) // 2])
    for broken in (bad, cut):
        with pytest.raises(ScanLoadError, match="not a readable NIfTI"):
            load_scan(broken)


def test_nan_voxels_still_counted(tmp_path):
    array = np.zeros((8, 8, 8), np.float32)
    array[1, 2, 3], array[4, 4, 4], array[5, 5, 5] = np.nan, np.inf, -np.inf
    with pytest.raises(ScanLoadError, match="3 voxels are NaN or infinite"):
        load_scan(_nifti(tmp_path, "nan.nii", array))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha"])
def test_saved_labels_read_back_identical(tmp_path, monkeypatch, suffix):
    labels = np.random.default_rng(4).integers(0, 7, (21, 16, 12)).astype(np.uint8)
    like = Scan(array=np.zeros(labels.shape, np.float32), affine=OBLIQUE)
    fast = save_labels(labels, like=like, path=tmp_path / f"fast{suffix}")
    monkeypatch.setitem(sys.modules, "isal", None)
    plain = save_labels(labels, like=like, path=tmp_path / f"plain{suffix}")
    a, b = load_scan(fast), load_scan(plain)
    assert np.array_equal(a.array, labels) and np.array_equal(b.array, labels)
    assert np.allclose(a.affine, OBLIQUE, atol=1e-5) and np.array_equal(a.affine, b.affine)
    if suffix == ".nii.gz":  # the same NIfTI bytes inside either compressor's stream
        assert gzip.decompress(fast.read_bytes()) == gzip.decompress(plain.read_bytes())


def test_world_points_equal_matrix_product():
    shape = (17, 23, 11)
    flat = np.random.default_rng(5).choice(np.prod(shape), 500, replace=False)
    ijk = np.stack(np.unravel_index(flat, shape), axis=1).astype(np.float64)
    expected = ijk @ OBLIQUE[:3, :3].T + OBLIQUE[:3, 3]
    np.testing.assert_allclose(G.world_points(flat, shape, OBLIQUE), expected, rtol=0, atol=1e-12)
    assert G.world_points(np.zeros(0, np.int64), shape, OBLIQUE).shape == (0, 3)


def test_centroid_and_bounds_equal_numpy():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(1000, 3)) * 40
    np.testing.assert_allclose(G.centroid(points), points.mean(axis=0), rtol=0, atol=1e-12)
    ijk = rng.integers(-2, 12, size=(1000, 3))
    assert np.array_equal(G.in_bounds(ijk, (10, 7, 11)), np.all((ijk >= 0) & (ijk < (10, 7, 11)), axis=1))


@pytest.mark.parametrize("device", ["cpu"])
def test_class_argmax_equals_torch_argmax_with_ties(device):
    rng = np.random.default_rng(6)
    probabilities = torch.as_tensor(rng.integers(0, 4, (7, 9, 10, 11)) / 4.0, dtype=torch.float32, device=device)
    got = class_argmax(probabilities)
    assert got.dtype == torch.uint8
    assert torch.equal(got.long(), probabilities.argmax(dim=0))


def _random_classes(seed, shape=(30, 26, 34)):
    """Blobs of every class, canal touching the array border, lesions near and far from it."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    classes = np.digitize(noise, np.quantile(noise, [0.55, 0.65, 0.75, 0.85, 0.93, 0.97])).astype(np.uint8)
    return np.array([0, 1, 2, 6, 5, 4, 3], np.uint8)[classes]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_touching_canal_equals_scipy_dilation(seed):
    classes = _random_classes(seed)
    comps = cc3d.connected_components(classes == L.LESION, connectivity=26)
    canal = (classes == L.SPINAL_CORD) | (classes == L.THECAL_SAC)
    touching = ndimage.binary_dilation(canal, structure=np.ones((3, 3, 3), bool)) & (classes == L.LESION)
    expected = set(np.unique(comps[touching]).tolist()) - {0}
    assert expected and _touching_canal(classes, comps) == expected


def _reference_find_lesions(classes, affine, vertebrae, settings, probability=None):
    """find_lesions as it was before issue 6 (no in-canal test: vertebrae have no canal here)."""
    lesion = classes == L.LESION
    comps, n = cc3d.connected_components(lesion, connectivity=26, return_N=True)
    voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))
    stats = cc3d.statistics(comps)
    counts = np.asarray(stats["voxel_counts"])
    vert_of_voxel = np.full(classes.size, -1, np.int64)
    for v in vertebrae:
        vert_of_voxel[v.lesion_idx] = v.index
    flat = np.flatnonzero(comps)
    comp_of = comps.ravel()[flat]
    canal = (classes == L.SPINAL_CORD) | (classes == L.THECAL_SAC)
    touching = ndimage.binary_dilation(canal, structure=np.ones((3, 3, 3), bool)) & lesion
    epidural_ids = set(np.unique(comps[touching]).tolist()) - {0}
    records, mask = [], np.zeros(classes.shape, bool)
    for k in np.argsort(-counts[1:]) + 1:
        if counts[k] * voxel_mm3 < settings.min_lesion_mm3:
            continue
        ijk = np.asarray(stats["centroids"][k], float)
        verts = vert_of_voxel[flat[comp_of == k]]
        verts = verts[verts >= 0]
        records.append({"id": len(records) + 1, "volume_ml": round(float(counts[k] * voxel_mm3 / 1000.0), 4),
                        "centroid_mm": [round(float(x), 2) for x in affine[:3, :3] @ ijk + affine[:3, 3]],
                        "vertebra_index": int(np.bincount(verts).argmax()) if verts.size else None,
                        "epidural": bool(k in epidural_ids), "confidence": None, "tta_sd": None})
        if probability is not None:
            idx = np.argwhere(comps == k).astype(float)
            records[-1]["confidence"] = round(float(np.mean(probability(idx @ affine[:3, :3].T + affine[:3, 3]))), 3)
        if k in epidural_ids:
            mask |= comps == k
    return records, mask


@pytest.mark.parametrize("seed", [0, 3])
def test_find_lesions_equals_reference(seed):
    classes = _random_classes(seed)
    lesion_flat = np.flatnonzero(classes == L.LESION)
    slab = np.unravel_index(lesion_flat, classes.shape)[2] * 3 // classes.shape[2]  # 3 vertebrae along z
    vertebrae = [SimpleNamespace(index=i, lesion_idx=lesion_flat[(slab == i) & (lesion_flat % 5 != 0)],
                                 canal_centre_mm=None, body_back_rel_mm=None) for i in range(3)]
    settings = MeasureSettings(min_lesion_mm3=2.0)
    got, got_mask = find_lesions(classes=classes, affine=OBLIQUE, vertebrae=vertebrae, settings=settings)
    expected, expected_mask = _reference_find_lesions(classes, OBLIQUE, vertebrae, settings)
    assert len(got) >= 3 and any(r["epidural"] for r in got)
    assert got == expected
    assert np.array_equal(got_mask, expected_mask)

    def probability(points_mm):   # a made-up lesion probability that varies in space
        return (np.abs(points_mm[:, 0]) % 7.0) / 7.0

    got, _ = find_lesions(classes=classes, affine=OBLIQUE, vertebrae=vertebrae, settings=settings,
                          lesion_probability=probability)
    expected, _ = _reference_find_lesions(classes, OBLIQUE, vertebrae, settings, probability=probability)
    assert got == expected and len({r["confidence"] for r in got}) > 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keep_spine_structure_equals_full_distance_transform(seed):
    """The box-limited distance transform keeps and drops the same islands as one over the whole grid."""
    from spinelesion.inference.postprocess import keep_spine_structure

    rng = np.random.default_rng(seed)
    labels = np.zeros((40, 36, 50), np.int64)
    labels[16:22, 14:20, 5:45] = 1                      # the column
    for _ in range(25):                                  # islands near and far
        x, y, z = rng.integers(0, (38, 34, 48))
        labels[x:x + 2, y:y + 2, z:z + 2] = rng.integers(1, 7)
    probabilities = torch.nn.functional.one_hot(torch.as_tensor(labels), 7).permute(3, 0, 1, 2).float()
    spacing = (2.0, 1.5, 2.5)
    got = keep_spine_structure(probabilities, spacing_mm=spacing, margin_mm=10.0).argmax(dim=0).numpy()

    foreground = labels > 0
    components = cc3d.connected_components(foreground.astype(np.uint8), connectivity=26)
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    distance = ndimage.distance_transform_edt(components != sizes.argmax(), sampling=spacing)
    keep = np.isin(components, np.unique(components[(distance <= 10.0) & foreground]))
    expected = np.where(foreground & ~keep, 0, labels)
    assert np.array_equal(got, expected)
    assert (expected != labels).any() and (expected > 0).sum() > (labels[16:22, 14:20, 5:45] > 0).sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rib_contacts_equal_full_distance_transform(seed):
    """The k-d tree near the labelled voxels finds the free bone within CONTACT_MM of a vertebra,
    and its nearest vertebra, as the whole grid's distance transform with indices does."""
    from spinelesion.measure import ribs

    rng = np.random.default_rng(seed)
    owner = np.zeros((30, 26, 34), np.int32)
    owner[12:18, 10:16, 2:32] = np.repeat(np.arange(1, 4), 10)[None, None, :]  # three vertebrae stacked
    free = rng.random(owner.shape) < 0.3
    free &= owner == 0
    affine = np.diag([2.13, 1.87, 2.41, 1.0])  # uneven spacing: no ties between nearest voxels
    flat = np.flatnonzero(free)
    got_at, got_who = ribs._nearest_owner(free_flat=flat, owner=owner, affine=affine)

    distance, nearest = ndimage.distance_transform_edt(owner == 0, sampling=(2.13, 1.87, 2.41), return_indices=True)
    touch = distance.ravel()[flat] <= ribs.CONTACT_MM
    expected_who = owner[tuple(n.ravel()[flat[touch]] for n in nearest)] - 1
    assert np.array_equal(got_at, np.flatnonzero(touch))
    assert np.array_equal(got_who, expected_who)
    assert 0 < touch.sum() < flat.size and set(expected_who.tolist()) == {0, 1, 2}


@pytest.mark.parametrize("seed,spacing,distance", [(0, (2.0, 2.0, 2.0), 2.0), (1, (1.5, 0.7, 2.2), 3.0),
                                                    (2, (0.8, 0.8, 3.0), 10.0)])
def test_components_near_equals_distance_transform(seed, spacing, distance):
    """Which components come within a distance of a target, from the sets' surfaces (k-d tree), equals the
    distance transform of the target read at every component voxel; distances equal to the limit count."""
    from spinelesion.inference.postprocess import components_near

    rng = np.random.default_rng(seed)
    target = np.zeros((40, 36, 30), bool)
    target[15:25, 12:22, 3:27] = True
    islands = np.zeros(target.shape, np.uint8)
    for _ in range(40):
        x, y, z = rng.integers(0, (38, 34, 28))
        islands[x:x + rng.integers(1, 4), y:y + rng.integers(1, 4), z:z + rng.integers(1, 4)] = 1
    islands[target] = 0
    components, n = cc3d.connected_components(islands, connectivity=26, return_N=True)
    got = components_near(components, n=n, target=target, spacing_mm=spacing, distance_mm=distance)

    near = ndimage.distance_transform_edt(~target, sampling=spacing) <= distance
    expected = np.zeros(n + 1, bool)
    expected[np.unique(components[near & (components > 0)])] = True
    expected[0] = False
    assert np.array_equal(got, expected)
    assert 0 < expected.sum() < n


@pytest.mark.parametrize("seed", [0, 1])
def test_clean_up_keeps_its_arg_max_current(seed):
    """The arg-max computed once and updated by the clean-up steps equals the arg-max of their result,
    and the label map made from it equals the one made without it."""
    from spinelesion.inference.postprocess import keep_spinal_lesions, keep_spine_structure
    from spinelesion.inference.resample import class_argmax, labels_on_grid

    rng = np.random.default_rng(seed)
    labels = np.zeros((30, 28, 40), np.int64)
    labels[12:18, 11:17, 3:37] = 1                                   # column
    labels[14:16, 13:15, 10:14] = 3                                  # a lesion in it
    for _ in range(30):                                              # islands, lesions far and near
        x, y, z = rng.integers(0, (28, 26, 38))
        labels[x:x + 2, y:y + 2, z:z + 2] = rng.choice([1, 2, 3, 4])
    logits = torch.as_tensor(rng.normal(size=(7, *labels.shape)), dtype=torch.float32)
    logits += 4.0 * torch.nn.functional.one_hot(torch.as_tensor(labels), 7).permute(3, 0, 1, 2)
    probs = torch.softmax(logits, dim=0)
    spacing = (1.5, 1.5, 1.5)

    plain = keep_spine_structure(probs.clone(), spacing_mm=spacing)
    plain, _ = keep_spinal_lesions(plain, spacing_mm=spacing, min_lesion_mm3=20.0, lesion_probability=0.5)
    fast = probs.clone()
    classes = class_argmax(fast)
    fast = keep_spine_structure(fast, spacing_mm=spacing, classes=classes)
    fast, counts = keep_spinal_lesions(fast, spacing_mm=spacing, min_lesion_mm3=20.0, lesion_probability=0.5,
                                       classes=classes)
    assert torch.equal(fast, plain) and torch.equal(classes, class_argmax(plain))
    assert counts["kept"] >= 1 and counts["outside_spine"] + counts["too_small"] >= 1  # both steps acted
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    target = np.diag([1.0, 1.2, 0.9, 1.0])
    assert np.array_equal(labels_on_grid(fast, source_affine=affine, target_affine=target, target_shape=(40, 30, 60),
                                         classes=classes),
                          labels_on_grid(plain, source_affine=affine, target_affine=target, target_shape=(40, 30, 60)))


@pytest.mark.parametrize("flipped", [False, True])
def test_separable_probabilities_equal_grid_sample(flipped, monkeypatch):
    """Probabilities on an axis-aligned target grid by three 1D interpolations equal grid_sample's
    trilinear ones (zero padding, renormalised near the edge) within float16 rounding."""
    from spinelesion.inference import resample as R

    rng = np.random.default_rng(4)
    probs = torch.softmax(torch.as_tensor(rng.normal(size=(7, 20, 18, 16)) * 3, dtype=torch.float32), 0)
    probs[3, 4:8] = 0  # a dropped lesion: the classes no longer sum to 1
    source = np.diag([1.5, 1.5, 1.5, 1.0])
    source[:3, 3] = [-2.0, 3.0, 1.0]
    target = np.diag([0.7, 0.6, 0.9, 1.0]) if not flipped else np.array(
        [[0, 0, -0.8, 20], [0.6, 0, 0, -1], [0, -0.7, 0, 14], [0, 0, 0, 1.0]])
    shape = (45, 50, 30)
    assert R._axis_permutation(np.linalg.inv(source) @ target) is not None
    fast = R.probabilities_on_grid(probs, source_affine=source, target_affine=target, target_shape=shape)
    monkeypatch.setattr(R, "_axis_permutation", lambda matrix: None)  # the general (grid_sample) path
    general = R.probabilities_on_grid(probs, source_affine=source, target_affine=target, target_shape=shape)
    assert np.abs(fast.astype(np.float32) - general.astype(np.float32)).max() <= 1 / 1024
    assert (general[0] == 1).sum() > 0 and (general[0] < 1).sum() > 0  # both outside and inside the grid


@pytest.mark.parametrize("order", ["C", "F"])
def test_probability_quantisation_equals_numpy(order):
    """uint8 probabilities by torch, reordered into a Fortran array's block, equal numpy's rint/clip."""
    from spinelesion.io.layout import as_fortran_order
    from spinelesion.io.save import _to_uint8

    rng = np.random.default_rng(7)
    values = np.asarray(rng.random((13, 9, 11)), dtype=np.float16, order=order)
    values.flat[:4] = [0.5 / 255, 1.5 / 255, 1.0, 0.0]  # halves round to even, as np.rint
    expected = np.clip(np.rint(values.astype(np.float32) * 255), 0, 255).astype(np.uint8)
    block = np.zeros((13, 9, 11, 2), np.uint8, order="F")
    block[..., 1] = as_fortran_order(_to_uint8(values), dtype=np.uint8)
    assert np.array_equal(block[..., 1], expected) and not block[..., 0].any()
