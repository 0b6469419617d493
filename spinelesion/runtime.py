"""Where work runs: the ``--device`` option and the ``torchrun`` set-up, for training and inference alike.

One resolution of ``--device`` (:func:`resolve_device`), one reading of torchrun's environment
(:func:`dist_info`), one process-group set-up (:func:`init_distributed`) and one choice of a rank's
GPU (:func:`rank_device`).
"""

from __future__ import annotations

import os

from spinelesion.errors import DeviceError


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; 'cpu', 'cuda' and 'cuda:N' as given.
    Unknown names, and CUDA without a usable GPU, raise DeviceError."""
    import torch

    device = str(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device != "cpu" and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise DeviceError(f"unknown device {device!r} (use auto, cpu or cuda)")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {device} asked for, but no CUDA GPU is available (use auto or cpu)")
        if ":" in device and int(device[5:]) >= torch.cuda.device_count():
            raise DeviceError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) without torchrun."""
    rank = int(os.environ.get("RANK", "0"))
    return rank, int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", str(rank)))


def init_distributed(device: str) -> None:
    """Join torchrun's process group (NCCL on GPUs, Gloo on CPUs) unless already joined."""
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        on_gpu = resolve_device(device).startswith("cuda") and torch.cuda.is_available()
        dist.init_process_group(backend="nccl" if on_gpu else "gloo")


def rank_device(device: str) -> str:
    """The device of this process: under torchrun each rank takes the GPU of its local rank
    (``cuda:N``); otherwise :func:`resolve_device` of ``device``."""
    import torch

    device = resolve_device(device)
    _, world, local = dist_info()
    if world > 1 and device == "cuda":
        return f"cuda:{local % torch.cuda.device_count()}"
    return device
