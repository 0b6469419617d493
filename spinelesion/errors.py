"""One exception family for every problem the user can fix.

The CLI catches :class:`SpinelesionError`, prints its message on one line and exits non-zero
without a traceback. Every message names the file (or key) and the problem.
"""

from __future__ import annotations


class SpinelesionError(Exception):
    """Base of every error the user can act on."""


class ScanLoadError(SpinelesionError):
    """An input scan could not be read, or was read but is unusable (2D, 4D, NaN, gaps...)."""


class DicomSeriesError(ScanLoadError):
    """A DICOM folder does not hold one clean, complete image series."""


class LabelMapError(SpinelesionError):
    """A label map does not fit its image (grid, values) or the label schema."""


class ConfigError(SpinelesionError):
    """A configuration file or override is invalid (unknown key, wrong type, bad value)."""


class CheckpointError(SpinelesionError):
    """A model checkpoint is missing, unreadable or incompatible."""


class NotAScanError(ScanLoadError):
    """An input is readable but is a segmentation (label map), not a scan to segment or measure."""


class DeviceError(SpinelesionError):
    """A compute device was asked for that is unknown or not available (``--device``)."""


class DatasetError(SpinelesionError):
    """A training dataset folder is missing or not laid out as its adapter expects."""


class RecordError(SpinelesionError):
    """A measurement record (measurements.json) is not valid (docs/record.schema.json)."""
