"""The application layer of ``spinelesion infer``: finding the scans, the case pipeline, run outputs.

- :mod:`.case`: one case from reading to status.json;
- :mod:`.batch`: the batch (prefetching, finishing threads, torchrun sharding, rerun skipping);
- :mod:`.run_outputs`: summary.csv, report.html, run.json.

The network itself is :mod:`spinelesion.inference` (predictor, resampling, clean-up); which files
and DICOM series under the input are cases is :mod:`spinelesion.io.discover`; files are read and
written through :mod:`spinelesion.io`.
"""

from spinelesion.pipeline.batch import BatchResult, run_batch

__all__ = ["BatchResult", "run_batch"]
