"""One case of a batch: read, run the network, then measure, write its outputs and its status.json.

:func:`predict_case` reads a scan (or takes the prefetched read) and runs the network;
:func:`finish_case` measures, writes each output on its own and writes status.json last (the
"finished" marker). Neither raises for a bad scan: the error goes into the status, one line a user
can act on, and the batch goes on.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from spinelesion.errors import NotAScanError, SpinelesionError
from spinelesion.io.atomic import remove_stale_temporaries, write_text_atomic
from spinelesion.io.discover import CaseInput
from spinelesion.record_types import MeasurementRecord
from spinelesion.report.tables import one_line
from spinelesion.report.viewer import VIEWER_IMAGE, VIEWER_PAGE

#: Longest one-line error kept in a status (characters).
ERROR_MAX_CHARS = 500

#: Written last in a case folder: the "finished" marker.
STATUS_FILE = "status.json"
#: Timed stages of a case (status.json "seconds", run.json "seconds_by_stage").
STAGES = ("load", "preprocess", "network", "postprocess", "measure", "write", "report")
#: Files a case folder may hold from an earlier attempt; removed before a case is redone.
CASE_OUTPUTS = ("labels.nii.gz", "labels.seg.dcm", "measurements.sr.dcm", "probabilities.nii.gz", "measurements.json",
                VIEWER_IMAGE, VIEWER_PAGE, STATUS_FILE)
#: Statuses of a case that a rerun does not redo.
DONE = ("ok", "skipped")


def timed_load(case: CaseInput):
    """(scan, seconds) for a case; raises what load_scan raises, and NotAScanError for a label map."""
    from spinelesion.io.checks import require_image, require_signal
    from spinelesion.io.load import load_scan

    t = time.perf_counter()
    scan = load_scan(case.path, series_uid=case.series_uid)
    require_image(scan, hint="--exclude GLOB leaves such files out")
    require_signal(scan)
    return scan, time.perf_counter() - t


@dataclass(kw_only=True)
class StartedCase:
    """A case between the network and its finishing stages: the scan and its prediction, or the
    error that stopped it; ``status`` is the record that becomes status.json."""

    case: CaseInput
    status: dict
    t_start: float
    scan: object = None
    prediction: object = None


def predict_case(case: CaseInput, *, predictor, loading: Future | None = None) -> StartedCase:
    """Read a case (or take the prefetched ``loading`` future of :func:`timed_load`) and run the
    network; never raises for a bad scan (the error goes into the status)."""
    seconds: dict[str, float] = {}
    started = StartedCase(case=case, t_start=time.perf_counter(),
                          status={"case": case.case_id, "input": case.label, "status": "failed", "error": None,
                                  "seconds": seconds, "outputs": []})
    try:
        with _recorded_errors(started.status, stage="load"):
            started.scan, seconds["load"] = (loading or _completed(timed_load, case)).result()
    except NotAScanError as err:  # a segmentation beside the scans: a note, not a failure
        started.status.update(status="skipped", error=_one_line(str(err)))
        return started
    if started.scan is not None:
        with _recorded_errors(started.status, stage="network"):
            started.prediction = predictor.predict(started.scan)
            seconds.update(started.prediction.seconds)
    return started


def finish_case(started: StartedCase, *, case_dir: Path, overlays: bool, save_probabilities: bool,
                lowest_level: str | None = None, measure_settings=None, viewer: bool = True) -> dict:
    """Measure, write the outputs and overlays of a predicted case, then its status.json (the
    "finished" marker, written last); never raises for a bad scan. Returns the status.

    Each output is made on its own: one that fails (a DICOM SEG the source's attributes do not
    allow, a full disk...) is recorded in ``status["output_errors"]`` and the others are still
    written; the case is then "partial", with the failed outputs in its one-line ``error``.
    The label map and the viewer's image need no measurement: a second thread writes them while
    this one measures (their "write" and "report" seconds overlap "measure"; "total" is wall time).
    """
    from spinelesion.io.save import save_labels, save_probabilities as save_probs
    from spinelesion.measure import measure_labels

    status, seconds = started.status, started.status["seconds"]
    scan, prediction = started.scan, started.prediction
    if prediction is not None:
        outputs: list = []
        errors: dict[str, str] = {}
        timing = threading.Lock()

        def attempt(name: str, stage: str, make):
            t = time.perf_counter()
            try:
                return make()
            except Exception as err:  # noqa: BLE001 - recorded against this output; the others go on
                errors[name] = _describe(err)
                if not isinstance(err, (SpinelesionError, MemoryError, OSError)):
                    status.setdefault("tracebacks", {})[name] = traceback.format_exc(limit=8)
                return None
            finally:
                with timing:
                    seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - t

        def measure():
            record = measure_labels(labels=prediction.labels, affine=scan.affine, image=scan.array,
                                    modality=scan.modality, lowest_level=lowest_level,
                                    settings=measure_settings, lesion_probability=prediction.lesion_probability,
                                    lesion_probability_sd=prediction.lesion_probability_sd)
            record.setdefault("provenance", {})["model"] = prediction.model
            return MeasurementRecord.from_json(record)  # typed (and checked) once; every writer reads it

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="case-files") as background:
            # the files that need no record are compressed on the other core while this one measures
            outputs.append(background.submit(attempt, "labels.nii.gz", "write", lambda: save_labels(
                prediction.labels, like=scan, path=case_dir / "labels.nii.gz")))
            if overlays and viewer:
                from spinelesion.report.viewer import save_viewer_image
                from spinelesion.report.viewer.image import label_box

                viewer_image = background.submit(attempt, VIEWER_IMAGE, "report", lambda: save_viewer_image(
                    scan, path=case_dir / VIEWER_IMAGE, box=label_box(prediction.labels, scan.affine)))
            record = attempt("measurements.json", "measure", measure)
            if scan.dicom is not None:
                from spinelesion.io.seg import save_dicom_seg
                from spinelesion.io.sr import save_dicom_sr

                seg = attempt("labels.seg.dcm", "write", lambda: save_dicom_seg(
                    prediction.labels, like=scan, path=case_dir / "labels.seg.dcm", levels=_segment_levels(record)))
                outputs.append(seg)
                if seg is not None and record is not None:  # the SR references the SEG's segments
                    outputs.append(attempt("measurements.sr.dcm", "write", lambda: save_dicom_sr(
                        record, like=scan, seg_path=seg, path=case_dir / "measurements.sr.dcm")))
            if save_probabilities and prediction.probabilities is not None:
                outputs.append(attempt("probabilities.nii.gz", "write", lambda: save_probs(
                    prediction.probabilities, like=scan, path=case_dir / "probabilities.nii.gz")))
            if record is not None:
                outputs.append(attempt("measurements.json", "write", lambda: _write_json(
                    case_dir / "measurements.json", record.to_json())))
            if overlays:
                from spinelesion.report import write_overlays

                with _OVERLAY_LOCK:  # matplotlib: one figure at a time
                    outputs.extend(attempt("overlays", "report", lambda: write_overlays(
                        scan=scan, labels=prediction.labels, record=record, out_dir=case_dir)) or [])
            if overlays and viewer:
                from spinelesion.report.viewer.page import write_viewer_page

                outputs.append(viewer_image)
                if viewer_image.result() is not None:  # the page shows the image: no page without it
                    outputs.append(attempt(VIEWER_PAGE, "report", lambda: write_viewer_page(
                        case_dir=case_dir, record=record, modality=scan.modality)))
        outputs = [p.result() if isinstance(p, Future) else p for p in outputs]
        written = [str(Path(p).relative_to(case_dir)) for p in outputs if p is not None]
        status.update(outputs=written, modality=scan.modality)
        if not errors:
            status.update(status="ok")
        else:
            status.update(status="partial" if written else "failed", output_errors=errors,
                          error=_one_line("; ".join(f"{name} not written: {why}" for name, why in errors.items())))
    started.scan = started.prediction = None  # free the arrays before the next case
    seconds["total"] = time.perf_counter() - started.t_start
    write_text_atomic(case_dir / STATUS_FILE, json.dumps(status, indent=2))
    return status


def _segment_levels(record: MeasurementRecord | None) -> dict[int, list[str]]:
    """The named levels each SEG segment covers: every named vertebra for the bodies and posterior
    elements, those a lesion lies in for the lesions (none without a record or names)."""
    from spinelesion import labels as schema

    if record is None:
        return {}
    named = [v.level for v in record.vertebrae if v.level]
    with_lesion = [v.level for v in record.vertebrae if v.level and any(x.vertebra_index == v.index for x in record.lesions)]
    return {schema.VERTEBRAL_BODY: named, schema.POSTERIOR_ELEMENTS: named, schema.LESION: with_lesion}


def _write_json(path: Path, record: dict) -> Path:
    write_text_atomic(path, json.dumps(record, indent=2))
    return path


_OVERLAY_LOCK = threading.Lock()


@contextlib.contextmanager
def _recorded_errors(status: dict, *, stage: str):
    """A SpinelesionError (one line) or any other exception (one line plus a short traceback)
    raised inside goes into ``status`` instead of propagating: the batch goes on. A
    NotAScanError propagates (the caller skips the case)."""
    try:
        yield
    except NotAScanError:
        raise
    except SpinelesionError as err:
        status["error"] = _one_line(str(err))
    except MemoryError as err:
        status["error"] = _one_line(f"{stage}: {_describe(err)}")
    except Exception as err:  # a bug or an unforeseen file problem: record it
        status["error"] = _one_line(f"{stage}: {_describe(err)}")
        status["traceback"] = traceback.format_exc(limit=8)


def _describe(err: BaseException) -> str:
    """One line a user can act on: the message of a SpinelesionError, else the type and message."""
    if isinstance(err, SpinelesionError):
        return _one_line(str(err))
    if isinstance(err, MemoryError):
        return _one_line(f"not enough memory{': ' + str(err) if str(err) else ''} "
                         "(close other programs, or use a machine with more memory)")
    text = _one_line(str(err))
    return f"{type(err).__name__}: {text}" if text else f"{type(err).__name__} (no message)"


def _completed(function, *args) -> Future:
    """A future already holding ``function(*args)``'s result or exception."""
    future: Future = Future()
    try:
        future.set_result(function(*args))
    except BaseException as err:  # re-raised by .result() inside predict_case's handlers
        future.set_exception(err)
    return future


def _one_line(text: str) -> str:
    return one_line(text, max_chars=ERROR_MAX_CHARS)


def is_finished(status: dict | None) -> bool:
    return status is not None and status.get("status") in DONE


def read_status(case_dir: Path) -> dict | None:
    try:
        return json.loads((case_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def clear_case_dir(case_dir: Path) -> None:
    """Remove what an earlier, unfinished attempt at a case left: its outputs and temporaries."""
    if not case_dir.is_dir():
        return
    remove_stale_temporaries(case_dir)
    for path in case_dir.iterdir():
        if path.is_file() and (path.name in CASE_OUTPUTS or path.suffix == ".png"):
            path.unlink(missing_ok=True)
