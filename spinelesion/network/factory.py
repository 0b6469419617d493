"""Network factory: a MONAI 3D segmentation network by name, from the config's parameters.

Names: ``unet`` (monai.networks.nets.UNet), ``dynunet`` (DynUNet, the nnU-Net architecture) and
``segresnet`` (SegResNet). ``params`` are the class's own keyword arguments (see the MONAI docs);
``spatial_dims``, ``in_channels`` and ``out_channels`` are set here (3, 1 and NUM_CLASSES).
Every network maps a (B, 1, X, Y, Z) float32 tensor to (B, NUM_CLASSES, X, Y, Z) logits.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any

from spinelesion.errors import ConfigError
from spinelesion.labels import NUM_CLASSES

#: The one registry of networks: config name -> class in ``monai.networks.nets``. A MONAI 3D
#: segmentation network whose constructor takes spatial_dims, in_channels and out_channels is
#: added here and nowhere else (configs name it, checkpoints record it).
NETWORKS: dict[str, str] = {"unet": "UNet", "dynunet": "DynUNet", "segresnet": "SegResNet"}
_FIXED = ("spatial_dims", "in_channels", "out_channels")


def _network_class(name: str):
    from monai.networks import nets

    if name not in NETWORKS:
        raise ConfigError(f"network.name: unknown network {name!r}; choose one of {', '.join(NETWORKS)}")
    return getattr(nets, NETWORKS[name])


def check_network(*, name: str, params: dict[str, Any], patch_size: Sequence[int]) -> None:
    """Check ``params`` against the network's signature and ``patch_size`` against its downsampling.

    Raises:
        ConfigError naming ``network.params.KEY`` (unknown, fixed or missing parameter,
        deep supervision) or ``patch_size`` (not divisible by the total downsampling factor).
    """
    cls = _network_class(name)
    signature = inspect.signature(cls.__init__)
    known = [p for p in signature.parameters if p != "self"]
    for key in params:
        if key in _FIXED:
            raise ConfigError(f"network.params.{key}: is set by spinelesion (3D, 1 input channel, "
                              f"{NUM_CLASSES} classes); remove it")
        if key not in known:
            raise ConfigError(f"network.params.{key}: not a parameter of {cls.__name__} "
                              f"(known: {', '.join(k for k in known if k not in _FIXED)})")
    for key, p in signature.parameters.items():
        if key not in ("self", *_FIXED) and p.default is inspect.Parameter.empty and key not in params:
            raise ConfigError(f"network.params.{key}: required by {cls.__name__}")
    if params.get("deep_supervision"):
        raise ConfigError("network.params.deep_supervision: not supported by the training loop; "
                          "set it to false")
    import torch

    with torch.device("meta"):  # construct without allocating weights: the class checks the rest
        build_network(name=name, params=params)
    divisor = _downsampling(name, params)
    if any(int(p) % divisor for p in patch_size):
        raise ConfigError(f"patch_size: {list(patch_size)} must be divisible by {divisor}, the total "
                          f"downsampling of network {name!r}")


def _downsampling(name: str, params: dict[str, Any]) -> int:
    if name == "unet":
        return math.prod(int(s) for s in params["strides"])
    if name == "dynunet":
        factor = 1
        for s in params["strides"]:
            factor *= int(max(s) if isinstance(s, (list, tuple)) else s)
        return factor
    return 2 ** (len(params.get("blocks_down", (1, 2, 2, 4))) - 1)


def build_network(*, name: str, params: dict[str, Any]):
    """Build the network (a ``torch.nn.Module``; lists in ``params`` become tuples)."""
    cls = _network_class(name)
    kwargs = {k: _tuples(v) for k, v in params.items()}
    try:
        return cls(spatial_dims=3, in_channels=1, out_channels=NUM_CLASSES, **kwargs)
    except (TypeError, ValueError, AssertionError) as err:
        raise ConfigError(f"network.params: {cls.__name__} rejected the parameters: {err}") from None


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value
