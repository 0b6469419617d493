"""Model checkpoints as safetensors (loading never runs code) and resume state.

A checkpoint is ONE ``.safetensors`` file: the network weights, plus a JSON record under the
``"spinelesion"`` key of the safetensors ``__metadata__`` (schema_version, label_names, config,
network, preprocessing, patch_size, epoch, metrics, training). Inference needs nothing else.

Resume state (optimiser, scheduler, AMP scaler, epoch, RNG, model) is ``resume.pt``, saved with
``torch.save`` of tensors and plain types only and read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from spinelesion.errors import CheckpointError
from spinelesion.io.atomic import atomic_path

META_KEY = "spinelesion"
SCHEMA_VERSION = 1


def save_checkpoint(path: str | os.PathLike, *, state_dict: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write weights + ``meta`` (JSON-encodable) to ``path`` atomically; returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"schema_version": SCHEMA_VERSION, **meta}
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta)})
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint: (state_dict of CPU tensors, meta). Reads data only, never code.

    Raises:
        CheckpointError: missing or unreadable file, no spinelesion record, other schema version.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            state = {key: f.get_tensor(key) for key in f.keys()}
    except Exception as err:  # safetensors raises its own error types for corrupt files
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({err})") from None
    if META_KEY not in header:
        raise CheckpointError(f"{path}: no {META_KEY!r} record in the safetensors metadata")
    try:
        meta = json.loads(header[META_KEY])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({err})") from None
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise CheckpointError(f"{path}: checkpoint schema_version {meta.get('schema_version')!r}, "
                              f"this spinelesion reads {SCHEMA_VERSION}")
    meta["label_names"] = {int(k): v for k, v in meta.get("label_names", {}).items()}
    return state, meta


def build_from_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu"
                          ) -> tuple[torch.nn.Module, dict]:
    """The network of a checkpoint with its weights, in eval mode on ``device``, and its meta."""
    from spinelesion.network.factory import build_network

    state, meta = load_checkpoint(path)
    network = meta.get("network") or {}
    if "name" not in network:
        raise CheckpointError(f"{path}: meta has no network name")
    model = build_network(name=network["name"], params=network.get("params", {}))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not fit network {network['name']!r}: "
                              f"{str(err).splitlines()[0]}") from None
    return model.to(device).eval(), meta


def save_resume(path: str | os.PathLike, state: dict) -> None:
    """``torch.save`` ``state`` (tensors and plain types only) atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_resume(path: str | os.PathLike) -> dict:
    """Read ``resume.pt`` with ``weights_only=True`` (no code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no resume state to continue from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: unreadable resume state ({err})") from None
