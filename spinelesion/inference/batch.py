"""Batch inference over a file, a DICOM series folder or a tree of scans.

Per case (``OUT/<case_id>/``): labels.nii.gz, labels.seg.dcm (DICOM inputs), measurements.json,
overlay PNGs, optional probabilities, and status.json written last (the "finished" marker).
Per run: summary.csv, report.html, run.json. A failed case is recorded and the batch goes on;
each output of a case is made independently: one that fails is recorded against that output and
the case is "partial". A segmentation found among the scans is "skipped" with a note. Rerunning
skips finished (ok or skipped) cases and redoes the others, after removing their old outputs and
any temporary files a killed run left. Under ``torchrun`` cases are sharded across ranks and rank 0
writes the run outputs once every rank is done.

Pipeline: the next scan is read in a background thread while the current one is processed, and
with ``finish_workers`` >= 1 the finishing stages (measure, write, overlays) of a case run in
worker threads while the network works on the next case. At most ``finish_workers`` cases wait
to be finished, which bounds memory. NumPy, SciPy, cc3d, zlib and torch release the GIL for
their large operations, so the stages overlap; overlays (matplotlib) are drawn one at a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import threading
import time
import traceback
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from spinelesion import __version__
from spinelesion.errors import NotAScanError, SpinelesionError
from spinelesion.inference.discover import CaseInput, discover_cases
from spinelesion.io.atomic import remove_stale_temporaries, write_text_atomic

STATUS_FILE = "status.json"
STAGES = ("load", "preprocess", "network", "postprocess", "measure", "write", "report")
#: Files a case folder may hold from an earlier attempt; removed before a case is redone.
CASE_OUTPUTS = ("labels.nii.gz", "labels.seg.dcm", "probabilities.nii.gz", "measurements.json", STATUS_FILE)
#: Statuses of a case that a rerun does not redo.
DONE = ("ok", "skipped")


@dataclass(frozen=True, kw_only=True)
class BatchResult:
    """Counts over every case of the input (all ranks): ``n_ok`` finished in this run, ``n_partial``
    with some outputs missing, ``n_failed``, ``n_not_scans`` segmentations skipped, ``n_skipped``
    finished in an earlier run. ``problems``: (case, status, one-line reason) of each partial or
    failed case."""

    out_dir: Path
    n_ok: int
    n_failed: int
    n_skipped: int
    report: Path | None
    demonstration_models: bool = False  # segmented by the shipped model (see its MODEL_CARD.md)
    n_partial: int = 0
    n_not_scans: int = 0
    problems: tuple[tuple[str, str, str], ...] = ()
    notes: tuple[tuple[str, str], ...] = ()  # (case, note) of each skipped segmentation

    @property
    def exit_code(self) -> int:
        return 1 if self.n_failed or self.n_partial else 0


def default_finish_workers(*, device: str, world_size: int = 1) -> int:
    """Finishing threads when none are asked for: none on CPU, where the network already uses
    every core (2-core machine: 15.1 -> 14.6 s per scan with 2, one more scan held in memory);
    on a GPU one per 4 CPU cores of this process's share, at most 4 (H200 machine, 16 cores,
    512x512x600 CT: 10.2 s per scan with 0, 9.3 with 1, 6.3 with 4; docs/benchmarks.md)."""
    if not str(device).startswith("cuda"):
        return 0
    from spinelesion.io.layout import available_cores

    return max(1, min(4, available_cores() // max(1, world_size) // 4))


def _dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def run_batch(*, input_path: str | Path, out_dir: str | Path, model: str | Path | None = None,
              device: str = "auto", tta: bool = False, save_probabilities: bool = False,
              overlays: bool = True, progress: bool = True, finish_workers: int | None = None,
              include: tuple[str, ...] | list[str] = (), exclude: tuple[str, ...] | list[str] = (),
              lowest_level: str | None = None) -> BatchResult:
    """Segment and measure every case under ``input_path`` into ``out_dir``; see module doc.

    ``finish_workers``: threads finishing cases (measure, write, overlays) while the network
    runs on the next one; 0 finishes each case before the next starts; None picks
    :func:`default_finish_workers` for the device. ``include`` / ``exclude``: glob patterns on
    the input paths (see :func:`discover_cases`). ``lowest_level``: the level of every scan's
    lowest vertebra (e.g. "L5"), to name levels by counting up, as ``spinelesion measure`` does.
    """
    from tqdm import tqdm

    from spinelesion.inference.predictor import Predictor, is_demonstration_model

    input_path, out_dir = Path(input_path), Path(out_dir)
    if lowest_level is not None:
        from spinelesion.errors import ConfigError
        from spinelesion.measure.vertebrae import LEVEL_ORDER

        if lowest_level not in LEVEL_ORDER:
            raise ConfigError(f"--lowest-level {lowest_level!r} is not a level ({LEVEL_ORDER[0]}..{LEVEL_ORDER[-1]})")
    rank, world = _dist_info()
    if world > 1:
        _init_distributed(device)
    cases = discover_cases(input_path, include=include, exclude=exclude)
    mine = cases[rank::world]
    started = time.time()
    predictor = Predictor(model=model, device=_rank_device(device, rank, world), tta=tta,
                          keep_probabilities=save_probabilities)
    if finish_workers is None:
        finish_workers = default_finish_workers(device=predictor.device, world_size=world)
    demonstration = any(is_demonstration_model(p) for p in predictor.paths.values())
    done_before = [_read_status(out_dir / c.case_id) for c in mine]
    todo = [c for c, status in zip(mine, done_before) if not _finished(status)]
    already = [sum((s or {}).get("status") == kind for s in done_before) for kind in DONE]
    for case in todo:  # outputs and temporaries of an earlier, unfinished attempt
        _clear_case_dir(out_dir / case.case_id)
    bar = tqdm(total=len(todo), desc=f"infer[{rank}]" if world > 1 else "infer", unit="scan",
               disable=not progress or None, dynamic_ncols=True)
    kwargs = dict(overlays=overlays, save_probabilities=save_probabilities, lowest_level=lowest_level)
    # the next scan is read in a background thread while this one is processed (I/O and zlib
    # release the GIL), so reading overlaps the network and the measurements
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool, \
            ThreadPoolExecutor(max_workers=max(finish_workers, 1), thread_name_prefix="finish") as finishers:
        upcoming = pool.submit(_timed_load, todo[0]) if todo else None
        waiting: deque[Future] = deque()
        for i, case in enumerate(todo):
            bar.set_postfix_str(case.case_id[-40:])
            loading, upcoming = upcoming, (pool.submit(_timed_load, todo[i + 1]) if i + 1 < len(todo) else None)
            case_dir = out_dir / case.case_id
            started_case = predict_case(case, predictor=predictor, loading=loading)
            if finish_workers <= 0:
                finish_case(started_case, case_dir=case_dir, **kwargs)
                bar.update(1)
                continue
            waiting.append(finishers.submit(finish_case, started_case, case_dir=case_dir, **kwargs))
            while len(waiting) > finish_workers:  # bounded: the oldest is done before the next starts
                waiting.popleft().result()
                bar.update(1)
        while waiting:
            waiting.popleft().result()
            bar.update(1)
    bar.close()
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    report = None
    statuses = [_read_status(out_dir / c.case_id) for c in cases]
    already_ok, already_skipped = _sum_over_ranks(already, device=predictor.device, world=world)
    if rank == 0:
        remove_stale_temporaries(out_dir)  # of run outputs a killed run was writing
        report = write_run_outputs(out_dir=out_dir, input_path=input_path, cases=cases, statuses=statuses,
                                   predictor=predictor, seconds_total=time.time() - started,
                                   world_size=world, finish_workers=finish_workers,
                                   demonstration_models=demonstration)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    counts = {kind: sum((s or {}).get("status", "failed") == kind for s in statuses)
              for kind in ("ok", "partial", "failed", "skipped")}
    problems = tuple((c.case_id, (s or {}).get("status", "failed"),
                      (s or {}).get("error") or "no status written (process died?)")
                     for c, s in zip(cases, statuses) if (s or {}).get("status") not in DONE)
    notes = tuple((c.case_id, s.get("error") or "") for c, s in zip(cases, statuses)
                  if (s or {}).get("status") == "skipped")
    return BatchResult(out_dir=out_dir, n_ok=counts["ok"] - already_ok, n_failed=counts["failed"],
                       n_partial=counts["partial"], n_not_scans=counts["skipped"],
                       n_skipped=already_ok + already_skipped, report=report,
                       demonstration_models=demonstration, problems=problems, notes=notes)


def _sum_over_ranks(values: list[int], *, device: str, world: int) -> list[int]:
    """``values`` summed over every rank (the values themselves without torchrun)."""
    if world <= 1:
        return list(values)
    import torch
    import torch.distributed as dist

    on = device if dist.get_backend() == "nccl" else "cpu"
    total = torch.tensor(values, dtype=torch.int64, device=on)
    dist.all_reduce(total)
    return [int(v) for v in total.cpu().tolist()]


def _clear_case_dir(case_dir: Path) -> None:
    """Remove what an earlier, unfinished attempt at a case left: its outputs and temporaries."""
    if not case_dir.is_dir():
        return
    remove_stale_temporaries(case_dir)
    for path in case_dir.iterdir():
        if path.is_file() and (path.name in CASE_OUTPUTS or path.suffix == ".png"):
            path.unlink(missing_ok=True)


def _timed_load(case: CaseInput):
    """(scan, seconds) for a case; raises what load_scan raises, and NotAScanError for a label map."""
    from spinelesion.inference.checks import require_image
    from spinelesion.io.load import load_scan

    t = time.perf_counter()
    scan = load_scan(case.path, series_uid=case.series_uid)
    require_image(scan, hint="--exclude GLOB leaves such files out")
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
    """Read a case (or take the prefetched ``loading`` future of :func:`_timed_load`) and run the
    network; never raises for a bad scan (the error goes into the status)."""
    seconds: dict[str, float] = {}
    started = StartedCase(case=case, t_start=time.perf_counter(),
                          status={"case": case.case_id, "input": case.label, "status": "failed", "error": None,
                                  "seconds": seconds, "outputs": []})
    try:
        with _recorded_errors(started.status, stage="load"):
            started.scan, seconds["load"] = (loading or _completed(_timed_load, case)).result()
    except NotAScanError as err:  # a segmentation beside the scans: a note, not a failure
        started.status.update(status="skipped", error=_one_line(str(err)))
        return started
    if started.scan is not None:
        with _recorded_errors(started.status, stage="network"):
            started.prediction = predictor.predict(started.scan)
            seconds.update(started.prediction.seconds)
    return started


def finish_case(started: StartedCase, *, case_dir: Path, overlays: bool, save_probabilities: bool,
                lowest_level: str | None = None) -> dict:
    """Measure, write the outputs and overlays of a predicted case, then its status.json (the
    "finished" marker, written last); never raises for a bad scan. Returns the status.

    Each output is made on its own: one that fails (a DICOM SEG the source's attributes do not
    allow, a full disk...) is recorded in ``status["output_errors"]`` and the others are still
    written; the case is then "partial", with the failed outputs in its one-line ``error``.
    """
    from spinelesion.io.save import save_labels, save_probabilities as save_probs
    from spinelesion.measure import measure_labels

    status, seconds = started.status, started.status["seconds"]
    scan, prediction = started.scan, started.prediction
    if prediction is not None:
        outputs: list[Path] = []
        errors: dict[str, str] = {}

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
                seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - t

        def measure():
            record = measure_labels(labels=prediction.labels, affine=scan.affine, image=scan.array,
                                    modality=scan.modality, lowest_level=lowest_level)
            record.setdefault("provenance", {})["model"] = prediction.model
            return record

        record = attempt("measurements.json", "measure", measure)
        outputs.append(attempt("labels.nii.gz", "write",
                               lambda: save_labels(prediction.labels, like=scan, path=case_dir / "labels.nii.gz")))
        if scan.dicom is not None:
            from spinelesion.io.seg import save_dicom_seg

            outputs.append(attempt("labels.seg.dcm", "write", lambda: save_dicom_seg(
                prediction.labels, like=scan, path=case_dir / "labels.seg.dcm")))
        if save_probabilities and prediction.probabilities is not None:
            outputs.append(attempt("probabilities.nii.gz", "write", lambda: save_probs(
                prediction.probabilities, like=scan, path=case_dir / "probabilities.nii.gz")))
        if record is not None:
            outputs.append(attempt("measurements.json", "write", lambda: _write_json(
                case_dir / "measurements.json", record)))
        if overlays:
            from spinelesion.report import write_overlays

            with _OVERLAY_LOCK:  # matplotlib: one figure at a time
                outputs.extend(attempt("overlays", "report", lambda: write_overlays(
                    scan=scan, labels=prediction.labels, record=record or _EMPTY_RECORD, out_dir=case_dir)) or [])
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


#: What the overlays are drawn with when the measurements failed: the label map alone.
_EMPTY_RECORD = {"vertebrae": [], "lesions": [], "cord": {}, "flags": []}


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
    return " ".join(text.split())[:500]


def _finished(status: dict | None) -> bool:
    return status is not None and status.get("status") in DONE


def _read_status(case_dir: Path) -> dict | None:
    try:
        return json.loads((case_dir / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_run_outputs(*, out_dir: Path, input_path: Path, cases: list[CaseInput], statuses: list[dict | None],
                      predictor, seconds_total: float, world_size: int, finish_workers: int = 0,
                      demonstration_models: bool = False) -> Path:
    """summary.csv, report.html, run.json and the colour tables for the whole run."""
    import monai
    import numpy as np
    import torch

    from spinelesion.report import summary_row, write_colour_tables, write_report_html, write_summary_csv

    rows, report_cases = [], []
    for case, status in zip(cases, statuses):
        status = status or {"status": "failed", "error": "no status written (process died?)", "seconds": {}}
        record = None
        if status["status"] in ("ok", "partial") and "measurements.json" in status.get("outputs", []):
            try:
                record = json.loads((out_dir / case.case_id / "measurements.json").read_text())
            except (OSError, ValueError):
                status = {**status, "status": "partial" if status.get("outputs") else "failed",
                          "error": "measurements.json missing or unreadable"}
        elif status["status"] == "ok":
            status = {**status, "status": "partial", "error": "measurements.json not written"}
        seconds = (status.get("seconds") or {}).get("total", 0.0)
        rows.append(summary_row(case=case.case_id, record=record, status=status["status"],
                                error=status.get("error"), input_label=case.label, seconds=seconds))
        report_cases.append({"case": case.case_id, "status": status["status"], "error": status.get("error"),
                             "record": record, "case_dir": Path(case.case_id),
                             "overlays": [o for o in status.get("outputs", []) if o.endswith(".png")],
                             "seconds": seconds})
    write_summary_csv(rows=rows, path=out_dir / "summary.csv")
    write_colour_tables(out_dir=out_dir)
    stage_totals = {stage: float(sum(((s or {}).get("seconds") or {}).get(stage, 0.0) for s in statuses))
                    for stage in (*STAGES, "total")}
    run_info = {
        "spinelesion_version": __version__,
        "input": str(input_path.name),
        "models": {m: p.name for m, p in predictor.paths.items()},
        "model_meta": {p.name: _model_summary(predictor, p) for p in predictor.paths.values()},
        "demonstration_models": demonstration_models,
        "device": predictor.device, "tta": predictor.tta, "world_size": world_size, "finish_workers": finish_workers,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "monai": monai.__version__, "numpy": np.__version__},
        "n_cases": len(cases),
        "n_ok": sum(r["status"] == "ok" for r in rows),
        "n_partial": sum(r["status"] == "partial" for r in rows),
        "n_failed": sum(r["status"] == "failed" for r in rows),
        "n_skipped_not_scans": sum(r["status"] == "skipped" for r in rows),
        "seconds_total": seconds_total,
        "seconds_by_stage": stage_totals,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_text_atomic(out_dir / "run.json", json.dumps(run_info, indent=2))
    return write_report_html(run_dir=out_dir, cases=report_cases, run_info=run_info)


def _model_summary(predictor, path: Path) -> dict:
    from spinelesion.inference.predictor import checkpoint_meta

    meta = checkpoint_meta(path)
    return {k: meta.get(k) for k in ("network", "preprocessing", "patch_size", "epoch", "metrics", "training")}


def _init_distributed(device: str) -> None:
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device != "cpu" and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)


def _rank_device(device: str, rank: int, world: int) -> str:
    import torch

    if world > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank))
        return f"cuda:{local % torch.cuda.device_count()}"
    return device
