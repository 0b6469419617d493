"""Training loop: data from adapters, cached MONAI pipeline, AMP, DDP, validation, checkpoints.

``train(config=..., resume=...)`` is what ``spinelesion train`` and ``scripts/train.py`` call.
Under ``torchrun`` (``WORLD_SIZE`` > 1) it runs DistributedDataParallel: NCCL on CUDA, gloo on
CPU; rank 0 writes checkpoints and logs. Outputs in ``config.output_dir``:

- ``best.safetensors`` / ``last.safetensors``: weights + meta (see :mod:`spinelesion.network.checkpoint`)
- ``resume.pt``: optimiser, scheduler, scaler, epoch, RNG and model state for ``--resume``
- ``metrics.csv``: one row per epoch; ``config.yaml``: the resolved config; ``tensorboard/``
"""

from __future__ import annotations

import csv
import io
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from spinelesion import __version__
from spinelesion.training.config import Config
from spinelesion.errors import CheckpointError, ConfigError
from spinelesion.io.atomic import write_text_atomic
from spinelesion.labels import LABEL_NAMES, NUM_CLASSES
from spinelesion.training.data import find_cases, make_datasets, make_loader
from spinelesion.runtime import dist_info

CSV_COLUMNS = ["epoch", "train_loss", "lr", "epoch_seconds",
               *[f"dice_{LABEL_NAMES[c]}" for c in range(1, NUM_CLASSES)],
               "mean_dice", "lesion_sensitivity", "lesion_fp_per_scan", "lesions_truth", "val_cases"]


def make_step(config: Config, *, model, network, loss_fn, optimizer, scheduler, scaler, amp: bool, device):
    """A function ``step(batch) -> loss (float)``: one optimiser step with AMP and gradient clipping.

    ``model`` is what runs forward (the DDP wrapper when distributed), ``network`` the bare module.
    """
    mask = config.loss.mask_unannotated
    clip = config.train.grad_clip_norm
    synth = config.synthesis.settings() if config.synthesis.enabled else None
    synth_gen = torch.Generator(device=device) if synth else None
    rank = dist_info()[0]

    def step(batch: dict) -> float:
        image = batch["image"].to(device, non_blocking=True)
        label = batch["label"].to(device, non_blocking=True)
        if synth is not None:   # tissue maps -> a new image per patch, on the training device
            from spinelesion.synthesis.appearance import synthesize
            from spinelesion.synthesis.fov import to_slab

            # seeded by the step count, which --resume restores: a resumed run draws what an unbroken one would
            synth_gen.manual_seed((config.seed * 1_000_003 + scheduler.last_epoch) * 64 + rank)
            image = synthesize(image.round().long(), generator=synth_gen, settings=synth,
                               spacing_mm=config.preprocessing.spacing_mm)
            image, label = to_slab(image, label, generator=synth_gen, settings=synth,
                                   spacing_mm=config.preprocessing.spacing_mm)
        annotated = batch["annotated"].to(device) if mask else None
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            logits = model(image)
        loss = loss_fn(logits, label, annotated)  # computed in float32
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(network.parameters(), clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        return float(loss.detach())

    return step


def _init_weights(network, config: Config) -> None:
    """Start from a checkpoint's weights (``train.init_from``: fine-tuning); optimiser and schedule start fresh.

    Raises:
        ConfigError: the checkpoint cannot be read or holds another network.
    """
    from spinelesion.network.checkpoint import load_checkpoint

    try:
        state, meta = load_checkpoint(config.train.init_from)
    except CheckpointError as err:
        raise ConfigError(f"train.init_from: {err}") from None
    wanted = {"name": config.network.name, "params": config.network.params}
    if meta.get("network") != wanted:
        raise ConfigError(f"train.init_from: {config.train.init_from} holds network {meta.get('network')}, "
                          f"the config asks for {wanted}")
    network.load_state_dict(state)


def _lr_lambda(config: Config, total_steps: int, steps_per_epoch: int):
    warmup = config.optim.warmup_epochs * steps_per_epoch
    kind = config.optim.schedule

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        if kind == "poly":
            return (1.0 - t) ** 0.9
        return 1.0

    return factor


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": list(random.getstate()[1]),
            "numpy": torch.from_numpy(np_state[1].astype(np.int64)), "numpy_pos": int(np_state[2])}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"]))


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _read_csv_rows(path: Path, up_to_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["epoch"]) <= up_to_epoch]


def _write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})
    write_text_atomic(path, buffer.getvalue())


@dataclass(kw_only=True)
class _Run:
    """Everything one training run holds between its steps (built by :func:`_set_up`)."""

    config: Config
    out: Path
    command: str
    dev: torch.device
    rank: int
    world: int
    amp: bool
    network: torch.nn.Module
    model: torch.nn.Module            # the DDP wrapper when distributed, else ``network``
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    step: Callable[[dict], float]
    loader: object
    sampler: object
    generator: torch.Generator
    train_ds: object
    val_loader: object
    n_train: int
    n_val: int
    steps: int
    start_epoch: int = 1
    best: dict = field(default_factory=lambda: {"value": None, "epoch": None})
    seconds_before: float = 0.0
    rows: list = field(default_factory=list)
    writer: object = None
    start_time: float = field(default_factory=time.monotonic)

    @property
    def dist_on(self) -> bool:
        return self.world > 1


def train(*, config: Config, resume: bool = False, device: str = "auto", command: str = "") -> dict:
    """Train the network described by ``config``; returns a summary dict (rank 0's view).

    Raises SpinelesionError subclasses before the first step for missing files, label values
    outside the schema, image/label grid mismatches and an output folder that already holds a
    run (without ``resume``).
    """
    run = _set_up(config, resume=resume, device=device, command=command)
    _open_outputs(run, resume=resume)
    val_metrics: dict = {}
    epoch = run.start_epoch - 1
    for epoch in range(run.start_epoch, config.train.epochs + 1):
        epoch_start = time.monotonic()
        train_loss = _train_epoch(run, epoch)
        val_metrics = _validate_epoch(run, epoch)
        if run.rank == 0:
            _save_epoch(run, epoch, train_loss=train_loss, val_metrics=val_metrics,
                        epoch_seconds=time.monotonic() - epoch_start)
        if run.dist_on:
            torch.distributed.barrier()
    if run.writer is not None:
        run.writer.close()
    if run.dist_on:
        torch.distributed.destroy_process_group()
    return {"rank": run.rank, "output_dir": str(run.out), "epochs": epoch, "best_epoch": run.best["epoch"],
            "best_value": run.best["value"], "metric": config.validation.metric, "last_metrics": val_metrics,
            "seconds": round(run.seconds_before + time.monotonic() - run.start_time, 1)}


def _set_up(config: Config, *, resume: bool, device: str, command: str) -> _Run:
    """Device, process group, data, network, optimiser and schedule of a run; its state restored
    from ``resume.pt`` with ``resume`` (or the weights of ``train.init_from``)."""
    from monai.data import DataLoader

    from spinelesion.network.factory import build_network
    from spinelesion.runtime import init_distributed, resolve_device
    from spinelesion.training.losses import MaskedDiceCELoss

    start_time = time.monotonic()
    device = resolve_device(device)  # DeviceError for an unknown device or CUDA without a GPU
    rank, world, local_rank = dist_info()
    use_cuda = device.startswith("cuda")
    dev = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1:
        init_distributed(device)
    out = Path(config.output_dir)
    try:
        if not resume and (out / "resume.pt").exists():
            raise ConfigError(f"output_dir: {out} already holds a training run; pass --resume to "
                              f"continue it or choose another output_dir")
        _seed(config.seed + rank)
        torch.backends.cudnn.benchmark = use_cuda and not config.train.deterministic
        if config.train.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        train_cases, val_cases = find_cases(config)
        train_ds, val_ds = make_datasets(config, train_cases, val_cases, rank=rank, world=world, dist_on=world > 1)
        loader, sampler, generator = make_loader(config, train_ds, rank=rank, world=world, pin_memory=use_cuda)
        steps = config.train.steps_per_epoch or len(loader)

        network = build_network(name=config.network.name, params=config.network.params).to(dev)
        model = (torch.nn.parallel.DistributedDataParallel(network, device_ids=[local_rank] if use_cuda else None)
                 if world > 1 else network)
        loss_fn = MaskedDiceCELoss(
            num_classes=NUM_CLASSES, class_weights=config.loss.class_weights,
            dice_weight=config.loss.dice_weight, ce_weight=config.loss.ce_weight).to(dev)
        if config.optim.name == "adamw":
            optimizer = torch.optim.AdamW(network.parameters(), lr=config.optim.lr,
                                          weight_decay=config.optim.weight_decay)
        else:
            optimizer = torch.optim.SGD(network.parameters(), lr=config.optim.lr, nesterov=True,
                                        momentum=config.optim.momentum, weight_decay=config.optim.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _lr_lambda(config, config.train.epochs * steps, steps))
        amp = config.train.amp and use_cuda
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        step = make_step(config, model=model, network=network, loss_fn=loss_fn, optimizer=optimizer,
                         scheduler=scheduler, scaler=scaler, amp=amp, device=dev)
        run = _Run(config=config, out=out, command=command, dev=dev, rank=rank, world=world, amp=amp,
                   network=network, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                   step=step, loader=loader, sampler=sampler, generator=generator, train_ds=train_ds,
                   val_loader=DataLoader(val_ds, batch_size=1, num_workers=0), n_train=len(train_cases),
                   n_val=len(val_cases), steps=steps, start_time=start_time)
        if config.train.init_from and not resume:
            _init_weights(network, config)
        if resume:
            _restore(run)
    except BaseException:
        if world > 1:
            torch.distributed.destroy_process_group()
        raise
    return run


def _restore(run: _Run) -> None:
    """Weights, optimiser, schedule, AMP scaler, RNG, best value and epoch from ``resume.pt``."""
    from spinelesion.network.checkpoint import load_resume

    config = run.config
    state = load_resume(run.out / "resume.pt")
    if state["network"] != {"name": config.network.name, "params": config.network.params}:
        raise ConfigError(f"network: differs from the run being resumed in {run.out}")
    run.network.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    run.start_epoch, run.best, run.seconds_before = state["epoch"] + 1, state["best"], state["seconds"]


def _open_outputs(run: _Run, *, resume: bool) -> None:
    """metrics.csv rows so far, config.yaml and the TensorBoard writer (rank 0); the start line."""
    import yaml

    config, out = run.config, run.out
    run.rows = _read_csv_rows(out / "metrics.csv", run.start_epoch - 1) if resume else []
    if run.rank != 0:
        return
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    if config.train.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter

            run.writer = SummaryWriter(log_dir=str(out / "tensorboard"))
        except ImportError:
            print("tensorboard is not installed; logging to metrics.csv only")
    print(f"training on {run.dev} x{run.world}: {run.n_train} training and {run.n_val} validation "
          f"cases, {run.steps} steps/epoch, epochs {run.start_epoch}..{config.train.epochs}")


def _train_epoch(run: _Run, epoch: int) -> float:
    """One epoch of ``run.steps`` optimiser steps; the mean training loss over every rank."""
    from tqdm import tqdm

    config = run.config
    # seeding per epoch makes a resumed run draw the same crops/augmentations as an unbroken one
    _seed(config.seed + 1009 * epoch + run.rank)
    run.train_ds.transform.set_random_state(seed=(config.seed + 7919 * epoch + run.rank) % 2**32)
    run.generator.manual_seed(config.seed + epoch)
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
    run.model.train()
    total, count = 0.0, 0
    bar = tqdm(total=run.steps, desc=f"epoch {epoch}/{config.train.epochs}", disable=run.rank != 0,
               dynamic_ncols=True, leave=False)
    batches = _cycle(run.loader)
    for _ in range(run.steps):
        loss = run.step(next(batches))
        total, count = total + loss, count + 1
        bar.set_postfix(loss=f"{total / count:.4f}")
        bar.update(1)
    bar.close()
    mean_loss = torch.tensor([total, count], dtype=torch.float64, device=run.dev)
    if run.dist_on:
        torch.distributed.all_reduce(mean_loss)
    return float(mean_loss[0] / mean_loss[1])


def _validate_epoch(run: _Run, epoch: int) -> dict:
    """Validation metrics on validation epochs (every ``validation.interval`` and the last), else {}."""
    from spinelesion.training.validation import summarise, validate

    config = run.config
    if not (epoch % config.validation.interval == 0 or epoch == config.train.epochs) or not run.n_val:
        return {}
    stats = validate(run.network, run.val_loader, device=run.dev, patch_size=config.patch_size,
                     sw_batch_size=config.validation.sw_batch_size, overlap=config.validation.overlap, amp=run.amp)
    if run.dist_on:
        gathered = [None] * run.world
        torch.distributed.all_gather_object(gathered, stats)
        stats = [s for part in gathered for s in part]
    return summarise(stats)


def _save_epoch(run: _Run, epoch: int, *, train_loss: float, val_metrics: dict, epoch_seconds: float) -> None:
    """Rank 0 after an epoch: metrics.csv row, TensorBoard scalars, last/best checkpoints, resume.pt."""
    from spinelesion.network.checkpoint import save_checkpoint, save_resume

    config, out = run.config, run.out
    seconds = run.seconds_before + time.monotonic() - run.start_time
    row = {"epoch": epoch, "train_loss": round(train_loss, 6),
           "lr": run.scheduler.get_last_lr()[0], "epoch_seconds": round(epoch_seconds, 2), **val_metrics}
    run.rows.append(row)
    _write_csv(out / "metrics.csv", run.rows)
    if run.writer is not None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                run.writer.add_scalar(key, value, epoch)
        run.writer.flush()
    meta = {"label_names": {str(k): v for k, v in LABEL_NAMES.items()}, "config": config.to_dict(),
            "network": {"name": config.network.name, "params": config.network.params},
            "preprocessing": config.preprocessing.as_meta(), "patch_size": list(config.patch_size),
            "epoch": epoch, "metrics": val_metrics,
            "training": {"command": run.command, "data": [vars(s) for s in config.data.sources],
                         "seconds": round(seconds, 1), "spinelesion_version": __version__,
                         "device": str(run.dev.type), "world_size": run.world}}
    state_dict = run.network.state_dict()
    save_checkpoint(out / "last.safetensors", state_dict=state_dict, meta=meta)
    value = val_metrics.get(config.validation.metric)
    if not run.n_val or (value is not None and (run.best["value"] is None or value > run.best["value"])):
        run.best = {"value": value, "epoch": epoch}
        save_checkpoint(out / "best.safetensors", state_dict=state_dict, meta=meta)
    save_resume(out / "resume.pt", {
        "epoch": epoch, "model": state_dict, "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(), "rng": _rng_state(),
        "best": run.best, "seconds": seconds,
        "network": {"name": config.network.name, "params": config.network.params}})
    remaining = (config.train.epochs - epoch) * epoch_seconds
    shown = ", ".join(f"{k} {v:.3f}" for k, v in val_metrics.items()
                      if isinstance(v, float) and k in ("mean_dice", "lesion_dice", "lesion_sensitivity",
                                                        "lesion_fp_per_scan"))
    print(f"epoch {epoch}/{config.train.epochs}: loss {train_loss:.4f}"
          f"{', ' + shown if shown else ''} ({epoch_seconds:.1f} s, ETA {remaining / 60:.1f} min)", flush=True)


def _cycle(loader):
    while True:
        yield from loader
