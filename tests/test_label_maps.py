"""apply_label_map: translation of label maps into our classes, and its no-translation path."""

from __future__ import annotations

import numpy as np
import pytest

from spinelesion.measure.label_maps import LabelMapError, apply_label_map


def _map(values) -> np.ndarray:
    labels = np.zeros((6, 5, 4), np.uint8)
    labels.flat[: len(values)] = values
    return labels


def test_a_schema_map_needs_no_translation_and_comes_back_as_is():
    labels = _map([1, 2, 3, 4, 5, 6])
    mapped = apply_label_map(labels, None)
    assert mapped.classes is labels and mapped.ignored_values == () and mapped.levels is None


def test_values_the_mapping_does_not_name_are_ignored_and_reported():
    labels = _map([1, 2, 9])
    mapped = apply_label_map(labels, None)
    assert mapped.ignored_values == (9,)
    assert mapped.classes.max() == 2 and mapped.classes is not labels


def test_other_mappings_and_integer_types_are_translated():
    ts = _map([0, 0, 0]).astype(np.int16)
    ts.flat[:3] = [26, 27, 200]                       # TotalSegmentator: S1 and L5 vertebrae; 200 names nothing
    mapped = apply_label_map(ts, "totalsegmentator")
    assert mapped.classes.dtype == np.uint8 and mapped.classes is not ts
    assert mapped.level_names == ("S1", "L5") and mapped.ignored_values == (200,)
    same = apply_label_map(_map([1, 2, 3]).astype(np.int32), None)   # schema values, another dtype
    assert np.array_equal(same.classes, _map([1, 2, 3])) and same.classes.dtype == np.uint8


def test_negative_or_huge_values_are_refused():
    with pytest.raises(LabelMapError, match="0..65535"):
        apply_label_map(_map([1]).astype(np.int32) - 5, None)
    with pytest.raises(LabelMapError, match="0..65535"):
        apply_label_map(np.full((2, 2, 2), 70000, np.int32), None)
