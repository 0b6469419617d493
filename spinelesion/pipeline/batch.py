"""Batch inference (``spinelesion infer``) over a file, a DICOM series folder or a tree of scans.

Per case (``OUT/<case_id>/``): labels.nii.gz, labels.seg.dcm and measurements.sr.dcm (DICOM inputs), measurements.json,
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

import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from spinelesion.io.atomic import remove_stale_temporaries
from spinelesion.io.discover import discover_cases
from spinelesion.pipeline.case import (DONE, clear_case_dir, finish_case, is_finished, predict_case, read_status,
                                       timed_load)
from spinelesion.pipeline.run_outputs import write_run_outputs
from spinelesion.runtime import dist_info, init_distributed, rank_device

if TYPE_CHECKING:   # annotations only: measure pulls in SciPy, which a bare import of the pipeline needs not
    from spinelesion.inference.settings import InferenceSettings
    from spinelesion.measure.settings import MeasureSettings


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
    every core; on a GPU one per 4 CPU cores of this process's share, at most 4 (the timings
    behind this choice: docs/benchmarks.md, "Batch throughput")."""
    if not str(device).startswith("cuda"):
        return 0
    from spinelesion.io.layout import available_cores

    return max(1, min(4, available_cores() // max(1, world_size) // 4))


def run_batch(*, input_path: str | Path, out_dir: str | Path, model: str | Path | None = None,
              device: str = "auto", settings: InferenceSettings | None = None,
              measure_settings: MeasureSettings | None = None, save_probabilities: bool = False,
              overlays: bool = True, viewer: bool = True, progress: bool = True, finish_workers: int | None = None,
              include: tuple[str, ...] | list[str] = (), exclude: tuple[str, ...] | list[str] = (),
              lowest_level: str | None = None, truth_dir: str | Path | None = None) -> BatchResult:
    """Segment and measure every case under ``input_path`` into ``out_dir``; see module doc.

    ``finish_workers``: threads finishing cases (measure, write, overlays) while the network
    runs on the next one; 0 finishes each case before the next starts; None picks
    :func:`default_finish_workers` for the device. ``include`` / ``exclude``: glob patterns on
    the input paths (see :func:`discover_cases`). ``lowest_level``: the level of every scan's
    lowest vertebra (e.g. "L5"), to name levels by counting up, as ``spinelesion measure`` does.
    ``truth_dir``: true records (``<case>.json``) shown beside the measurements in the report (the demo).
    ``overlays``: the PNG overlays and, with ``viewer``, each case's interactive viewer (its image copy
    and page).
    ``settings`` / ``measure_settings``: how the network runs and what the measurements use
    (:func:`spinelesion.inference.settings.load_run_settings` reads both from YAML); defaults if None.
    """
    from spinelesion.inference.predictor import Predictor, is_demonstration_model

    input_path, out_dir = Path(input_path), Path(out_dir)
    if lowest_level is not None:
        from spinelesion.errors import ConfigError
        from spinelesion.vocabulary import LEVEL_ORDER

        if lowest_level not in LEVEL_ORDER:
            raise ConfigError(f"--lowest-level {lowest_level!r} is not a level ({LEVEL_ORDER[0]}..{LEVEL_ORDER[-1]})")
    rank, world, _ = dist_info()
    if world > 1:
        init_distributed(device)
    cases = discover_cases(input_path, include=include, exclude=exclude)
    mine = cases[rank::world]
    started = time.time()
    predictor = Predictor(model=model, device=rank_device(device), settings=settings,
                          keep_probabilities=save_probabilities)
    if finish_workers is None:
        finish_workers = default_finish_workers(device=predictor.device, world_size=world)
    demonstration = any(is_demonstration_model(p) for p in predictor.paths.values())
    done_before = [read_status(out_dir / c.case_id) for c in mine]
    todo = [c for c, status in zip(mine, done_before) if not is_finished(status)]
    already = [sum((s or {}).get("status") == kind for s in done_before) for kind in DONE]
    for case in todo:  # outputs and temporaries of an earlier, unfinished attempt
        clear_case_dir(out_dir / case.case_id)
    _process(todo, out_dir=out_dir, predictor=predictor, finish_workers=finish_workers,
             label=f"infer[{rank}]" if world > 1 else "infer", progress=progress,
             overlays=overlays, viewer=viewer, save_probabilities=save_probabilities, lowest_level=lowest_level,
             measure_settings=measure_settings)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    report = None
    statuses = [read_status(out_dir / c.case_id) for c in cases]
    already_ok, already_skipped = _sum_over_ranks(already, device=predictor.device, world=world)
    if rank == 0:
        remove_stale_temporaries(out_dir)  # of run outputs a killed run was writing
        report = write_run_outputs(out_dir=out_dir, input_path=input_path, cases=cases, statuses=statuses,
                                   predictor=predictor, seconds_total=time.time() - started,
                                   world_size=world, finish_workers=finish_workers,
                                   demonstration_models=demonstration, truth_dir=truth_dir)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return _result(out_dir=out_dir, cases=cases, statuses=statuses, already_ok=already_ok,
                   already_skipped=already_skipped, report=report, demonstration=demonstration)


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


def _process(todo: list, *, out_dir: Path, predictor, finish_workers: int, label: str, progress: bool,
             **finish_options) -> None:
    """Run every case of ``todo``: the next scan is read in a background thread while this one is
    processed (I/O and zlib release the GIL), and with ``finish_workers`` >= 1 the finishing stages
    run in threads while the network works on the next case (at most that many cases wait)."""
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc=label, unit="scan", disable=not progress or None, dynamic_ncols=True)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool, \
            ThreadPoolExecutor(max_workers=max(finish_workers, 1), thread_name_prefix="finish") as finishers:
        upcoming = pool.submit(timed_load, todo[0]) if todo else None
        waiting: deque[Future] = deque()
        for i, case in enumerate(todo):
            bar.set_postfix_str(case.case_id[-40:])
            loading, upcoming = upcoming, (pool.submit(timed_load, todo[i + 1]) if i + 1 < len(todo) else None)
            case_dir = out_dir / case.case_id
            started_case = predict_case(case, predictor=predictor, loading=loading)
            if finish_workers <= 0:
                finish_case(started_case, case_dir=case_dir, **finish_options)
                bar.update(1)
                continue
            waiting.append(finishers.submit(finish_case, started_case, case_dir=case_dir, **finish_options))
            while len(waiting) > finish_workers:  # bounded: the oldest is done before the next starts
                waiting.popleft().result()
                bar.update(1)
        while waiting:
            waiting.popleft().result()
            bar.update(1)
    bar.close()


def _result(*, out_dir: Path, cases: list, statuses: list, already_ok: int, already_skipped: int,
            report, demonstration: bool) -> BatchResult:
    """The batch's counts, problems and notes from every case's status."""
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
