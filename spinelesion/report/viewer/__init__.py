"""The interactive viewer of a run's cases (NiiVue in the browser, served by ``spinelesion review``).

A case folder of ``spinelesion infer`` holds, beside ``labels.nii.gz``:

- ``viewer_image.nii.gz`` (:mod:`.image`): the scan as int16 NIfTI on its own grid, nothing but
  voxels and geometry;
- ``viewer.html`` (:mod:`.page`): NiiVue showing that image under the labels, beside the case's
  tables; a row moves the crosshair to its vertebra, lesion or worst cord slice.

The page's scripts are not copied into runs: ``spinelesion review`` serves ``static/`` of the
installed package under ``/_viewer/`` (NiiVue's browser build, vendored and pinned: ``VENDORED.md``;
its licence; the page's own script and style). ``_viewer`` cannot be a case folder: case ids never
start with "_" or "." (io/discover.py).
"""

from __future__ import annotations

import os
from pathlib import Path

from spinelesion.report.viewer.image import VIEWER_IMAGE, save_viewer_image

#: A case's viewer page, in its folder.
VIEWER_PAGE = "viewer.html"
#: The label map it shows (the case step's output).
LABELS = "labels.nii.gz"
#: URL folder (from the run folder's root) under which ``spinelesion review`` serves ``STATIC_FILES``.
ASSETS_URL = "_viewer"
#: Files of ``spinelesion/report/viewer/static`` the page loads.
STATIC_FILES = ("niivue.umd.js", "LICENSE.niivue.txt", "viewer.js", "viewer.css")
#: NiiVue release vendored in ``static/niivue.umd.js``.
NIIVUE_VERSION = "0.69.0"


def has_viewer(*, run_dir: str | os.PathLike, case_dir: str | os.PathLike | None) -> bool:
    """Whether a case folder holds a viewer page and what it shows (the viewer image, the labels)."""
    if case_dir is None:
        return False
    folder = Path(run_dir) / case_dir
    return all((folder / name).is_file() for name in (VIEWER_PAGE, VIEWER_IMAGE, LABELS))


def static_file(name: str) -> Path | None:
    """Path of one of ``STATIC_FILES`` in the installed package (None for any other name)."""
    if name not in STATIC_FILES:
        return None
    from importlib.resources import files

    return Path(str(files("spinelesion.report.viewer") / "static" / name))


__all__ = ["ASSETS_URL", "LABELS", "NIIVUE_VERSION", "STATIC_FILES", "VIEWER_IMAGE", "VIEWER_PAGE", "has_viewer",
           "save_viewer_image", "static_file"]
