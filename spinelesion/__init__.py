"""spinelesion: find and measure cancerous lesions of the spine on CT and MRI.

Data flows one way: path -> :class:`~spinelesion.io.scan.Scan` -> tensor -> network ->
label map on the scan's grid -> measurement record -> report.
"""

__version__ = "0.1.0"
