"""Find the cases in an inference input: one file, one DICOM series folder, or a tree of scans."""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from spinelesion.errors import ScanLoadError
from spinelesion.io.load import ITK_SUFFIXES, NIFTI_SUFFIXES

#: Files that ``spinelesion infer`` writes into a case folder (beside its status.json) that a reader
#: of scans would take for scans: a later run over a folder holding earlier outputs skips them.
RUN_OUTPUT_NAMES = ("viewer_image.nii.gz", "probabilities.nii.gz", "labels.nii.gz")

#: Files that commonly sit beside scans and are not inputs (sidecars, docs); ignored, not failed.
IGNORED_NAMES = re.compile(r"^(\..*|readme.*|license.*|licence.*|dicomdir|.*\.(json|md|csv|tsv|html|png|jpg|txt\.lock))$",
                           re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class CaseInput:
    """One scan to process. ``case_id`` is made from the path under the input root (and, for DICOM,
    a short hash of the SeriesInstanceUID), never from DICOM patient fields."""

    case_id: str
    path: Path
    series_uid: str | None = None
    label: str = ""  # path relative to the input root, for reports


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _safe_id(relative: Path) -> str:
    text = str(relative).replace("\\", "/")
    for suffix in (*NIFTI_SUFFIXES, *ITK_SUFFIXES, ".dcm"):
        if text.lower().endswith(suffix):
            text = text[: -len(suffix)]
            break
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace("/", "__")).strip("._")
    return text or "scan"


def _selected(rel: Path, include, exclude) -> bool:
    """Whether a path relative to the input root passes the ``--include`` / ``--exclude`` globs; a
    pattern matches the relative path (``sub/*.nii.gz``) or any part of it (``*_seg*``, ``labelsTr``)."""
    text = rel.as_posix()

    def hit(pattern: str) -> bool:
        pattern = pattern.rstrip("/")
        return fnmatch.fnmatch(text, pattern) or any(fnmatch.fnmatch(part, pattern) for part in rel.parts)

    if include and not any(hit(p) for p in include):
        return False
    return not any(hit(p) for p in exclude)


def discover_cases(root: str | Path, *, include=(), exclude=()) -> list[CaseInput]:
    """Cases under ``root``, sorted by id.

    ``include`` / ``exclude``: glob patterns (``fnmatch``) on each file's path relative to ``root``
    or any of its parts (folder or file names): with ``include`` only matching files are cases;
    matching ``exclude`` drops a file. A DICOM series is kept when any of its files is.

    NIfTI/MHA/NRRD files are one case each; DICOM files are grouped by folder and
    SeriesInstanceUID, one case per series; other files (not hidden, not sidecars such as
    .json/.md) become cases too, so the batch records them as failed "not an image" rather
    than silently dropping them. A spinelesion case folder's outputs (``RUN_OUTPUT_NAMES`` beside a
    status.json) are no inputs. An empty folder raises ScanLoadError.
    """
    root = Path(root)
    if not root.exists():
        raise ScanLoadError(f"{root}: no such file or folder")
    if root.is_file():
        return [CaseInput(case_id=_safe_id(Path(root.name)), path=root, label=root.name)]
    include, exclude = tuple(include or ()), tuple(exclude or ())
    cases: list[CaseInput] = []
    dicom_dirs: dict[Path, int] = {}
    dicom_files: set[Path] = set()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or IGNORED_NAMES.match(path.name):
            continue
        if path.name in RUN_OUTPUT_NAMES and (path.parent / "status.json").is_file():
            continue
        if not _selected(rel, include, exclude):
            continue
        if path.name.lower().endswith((*NIFTI_SUFFIXES, *ITK_SUFFIXES)):
            cases.append(CaseInput(case_id=_safe_id(rel), path=path, label=str(rel)))
        elif path.name.lower().endswith(".raw") or path.name.lower().endswith(".zraw"):
            continue  # MHD payloads
        elif _is_dicom(path) or path.suffix.lower() == ".dcm":
            dicom_dirs[path.parent] = dicom_dirs.get(path.parent, 0) + 1
            dicom_files.add(path)
        else:
            cases.append(CaseInput(case_id=_safe_id(rel), path=path, label=str(rel)))
    if dicom_dirs:
        cases.extend(_dicom_cases(root, sorted(dicom_dirs), selected=dicom_files))
    if not cases:
        if include or exclude:
            raise ScanLoadError(f"{root}: no scans left after --include {list(include)} / --exclude {list(exclude)}")
        raise ScanLoadError(f"{root}: empty folder (no scans found)")
    return sorted(cases, key=lambda c: c.case_id)


def _dicom_cases(root: Path, folders: list[Path], *, selected: set[Path] | None = None) -> list[CaseInput]:
    """One case per DICOM image series, reading headers once for the whole tree."""
    import os

    from spinelesion.io.dicom import list_series

    try:
        series = list_series(root)
    except ScanLoadError:
        series = []
    cases, covered = [], set()
    for info in series:
        if selected is not None and not any(f in selected for f in info.files):
            continue
        folder = Path(os.path.commonpath([str(f.parent) for f in info.files]))
        covered.update(f.parent for f in info.files)
        rel = folder.relative_to(root) if folder != root else Path(root.name)
        uid_hash = hashlib.sha1(info.series_instance_uid.encode()).hexdigest()[:8]
        cases.append(CaseInput(case_id=f"{_safe_id(rel)}__{uid_hash}", path=folder,
                               series_uid=info.series_instance_uid,
                               label=f"{rel}/ (DICOM {info.modality or ''} series, {info.n_images} images)"))
    for folder in folders:  # DICOM files that form no image series: fail with the loader's message
        if folder not in covered:
            rel = folder.relative_to(root) if folder != root else Path(root.name)
            cases.append(CaseInput(case_id=_safe_id(rel), path=folder, label=f"{rel}/"))
    return cases
