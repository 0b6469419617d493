"""Training data: cases from every source, the cached MONAI datasets and the training loader.

Shapes: dataset items hold ``image`` (1, X, Y, Z) float32 (a tissue map of integers when images are
synthesised in the step) and ``label`` (1, X, Y, Z) int, cropped to ``patch_size`` for training.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from spinelesion.errors import ConfigError, LabelMapError, ScanLoadError, SpinelesionError
from spinelesion.training.config import Config


def find_cases(config: Config) -> tuple[list, list]:
    """(training cases, validation cases) from every data source; checks the files exist.

    Validation cases are the sources' own ``validation`` split when any source has one, else a
    seeded random ``val_fraction`` of the cases. Cases without a label map are not used.
    """
    from spinelesion.data.adapters import get_adapter

    cases = []
    separate = [(f"data.validation_sources.{i}", s) for i, s in enumerate(config.data.validation_sources)]
    for key, source in [(f"data.sources.{i}", s) for i, s in enumerate(config.data.sources)] + separate:
        root = Path(source.root)
        if not root.exists():
            raise ConfigError(f"{key}.root: {root}: no such file or folder")
        adapter = get_adapter(source.adapter)
        listed = (adapter.find_cases(root, description=source.description) if source.description
                  else adapter.find_cases(root))
        found = [c for c in listed if c.label is not None]
        if key.startswith("data.validation_sources"):
            found = [dataclasses.replace(c, split="validation") for c in found]
        elif separate:   # the validation sources replace the training sources' own splits
            found = [c for c in found if c.split != "validation"]
        if not found:
            raise ConfigError(f"{key}: {root}: no labelled cases for adapter {source.adapter!r}")
        for case in found:
            if not Path(case.image).exists():
                raise ScanLoadError(f"{case.image}: image of case {case.case_id} not found")
            if not Path(case.label).exists():
                raise LabelMapError(f"{case.label}: label map of case {case.case_id} not found")
        cases += found
    val = [c for c in cases if c.split == "validation"]
    train = [c for c in cases if c.split != "validation"]
    if not val and config.data.val_fraction > 0 and len(train) > 1:
        order = np.random.default_rng(config.seed).permutation(len(train))
        n_val = min(len(train) - 1, max(1, round(config.data.val_fraction * len(train))))
        val = [train[i] for i in sorted(order[:n_val])]
        train = [train[i] for i in sorted(order[n_val:])]
    if not train:
        raise ConfigError("data.sources: no training cases left after the validation split")
    return train, val


def spinelesion_error_in(err: BaseException) -> SpinelesionError | None:
    """The SpinelesionError that MONAI wrapped (``applying transform ...``), if any."""
    while err is not None:
        if isinstance(err, SpinelesionError):
            return err
        err = err.__cause__ or err.__context__
    return None


def make_datasets(config: Config, train_cases, val_cases, *, rank: int = 0, world: int = 1,
                  dist_on: bool = False):
    """(training dataset, this rank's share of the validation dataset), cached as configured.

    Every case is loaded and checked (grid, label values) here, before training starts.
    """
    from monai.data import CacheDataset, PersistentDataset

    from spinelesion.network.transforms import case_item, train_transforms, val_transforms

    prep = config.preprocessing.as_meta()
    train_tf = train_transforms(preprocessing=prep, patch_size=config.patch_size,
                                sampling=config.sampling, augment=config.augment,
                                tissue=config.synthesis.enabled,
                                whole_body_lesion_prob=config.synthesis.whole_body_lesion_prob)
    val_tf = val_transforms(preprocessing=prep)
    train_items = [case_item(c) for c in train_cases]
    val_items = [case_item(c) for c in val_cases][rank::world]
    workers = max(1, config.data.num_workers)
    try:
        if config.data.cache == "memory":
            train_ds = CacheDataset(train_items, transform=train_tf, num_workers=workers, progress=rank == 0)
            val_ds = CacheDataset(val_items, transform=val_tf, num_workers=workers, progress=False)
        else:
            import hashlib
            import json

            key = hashlib.sha1(json.dumps(prep, sort_keys=True).encode()).hexdigest()[:12]
            cache_dir = Path(config.data.cache_dir) / key  # new preprocessing -> new cache
            train_ds = PersistentDataset(train_items, transform=train_tf, cache_dir=cache_dir / "train")
            val_ds = PersistentDataset(val_items, transform=val_tf, cache_dir=cache_dir / "val")
            if rank == 0 or not dist_on:  # fill the cache (and check every case) before training
                for i in range(len(train_ds)):
                    train_ds[i]
            if dist_on:
                torch.distributed.barrier()
            for i in range(len(val_ds)):
                val_ds[i]
    except Exception as err:
        found = spinelesion_error_in(err)
        if found is not None:
            raise found from None
        raise
    return train_ds, val_ds


def make_loader(config: Config, train_ds, *, rank: int = 0, world: int = 1, pin_memory: bool = False):
    """(DataLoader, DistributedSampler or None, torch.Generator) over the training dataset.

    Each batch holds ``batch_size * samples_per_volume`` patches: image (N, 1, *patch) float32,
    label (N, 1, *patch), annotated (N, NUM_CLASSES) bool.
    """
    from monai.data import DataLoader, list_data_collate

    sampler = (torch.utils.data.distributed.DistributedSampler(train_ds, num_replicas=world, rank=rank,
                                                               shuffle=True, seed=config.seed)
               if world > 1 else None)
    generator = torch.Generator()
    loader = DataLoader(train_ds, batch_size=config.train.batch_size, shuffle=sampler is None,
                        sampler=sampler, num_workers=config.data.num_workers, collate_fn=list_data_collate,
                        generator=generator, drop_last=False, pin_memory=pin_memory,
                        persistent_workers=config.data.num_workers > 0)
    return loader, sampler, generator
