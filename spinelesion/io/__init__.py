"""Reading scans and writing label maps; every output lands on the input's exact grid."""

from spinelesion.io.load import load_scan
from spinelesion.io.save import save_labels
from spinelesion.io.scan import DicomReference, Scan

__all__ = ["DicomReference", "Scan", "load_scan", "save_labels"]
