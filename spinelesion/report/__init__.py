"""Review outputs: overlay PNGs, report.html, summary.csv rows and colour tables.

matplotlib is imported only when overlays are drawn.
"""

from spinelesion.report.colour_tables import write_colour_tables
from spinelesion.report.html import write_report_html
from spinelesion.report.overlays import write_overlays
from spinelesion.report.tables import summary_row, write_summary_csv

__all__ = ["summary_row", "write_colour_tables", "write_overlays", "write_report_html", "write_summary_csv"]
