"""Measurements from a label map: vertebrae, lesions, body destruction, height loss, cord compression.

``measure_labels`` (arrays) and ``measure_files`` (paths) return the record of docs/contracts.md §2.
"""

from spinelesion.measure.record import measure_files, measure_labels
from spinelesion.measure.settings import MeasureSettings, settings_from_dict

__all__ = ["measure_labels", "measure_files", "MeasureSettings", "settings_from_dict"]
