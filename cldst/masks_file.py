"""The masks file of a run record (masks.pt): every task's mask, one bit per weight.

    {"format": MASKS_FORMAT, "shapes": {layer: shape}, "tasks": [{layer: uint8 np.packbits of the mask}]}

written by `save_masks` (ContinualSparsity.save_masks, records.save_result), read by `load_masks`
(the analysis, cldst.sparse.load_masks) and checked without unpacking by records.record_status.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cldst.errors import DataError

MASKS_FORMAT = "cldst-masks-v1"
Masks = dict[str, Tensor]  # layer name -> bool tensor of the layer's shape


def save_masks(masks: list[Masks], path: str | Path) -> None:
    """torch.save the masks of every task, each layer as np.packbits-ed uint8 (1 bit per weight)."""
    shapes = {name: list(mask.shape) for name, mask in masks[0].items()} if masks else {}
    packed = [
        {name: torch.from_numpy(np.packbits(mask.detach().cpu().numpy().ravel())) for name, mask in task.items()}
        for task in masks
    ]
    # Through a file object: torch names the archive's root folder after a path it is given, so the same
    # masks saved under another name (a temporary file renamed into place) would differ in bytes.
    with open(path, "wb") as f:
        torch.save({"format": MASKS_FORMAT, "shapes": shapes, "tasks": packed}, f)


def load_masks(path: str | Path) -> list[Masks]:
    """Read `save_masks`' file back: one {layer: bool tensor} per task, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such masks file")
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: report it in one line
        raise DataError(f"{path}: not a readable masks file ({type(exc).__name__})") from exc
    if not isinstance(stored, dict) or stored.get("format") != MASKS_FORMAT:
        raise DataError(f"{path}: not a cldst masks file (expected format {MASKS_FORMAT!r})")
    shapes = stored["shapes"]
    return [
        {
            name: torch.from_numpy(np.unpackbits(bits.numpy(), count=math.prod(shapes[name])).astype(bool)).view(shapes[name])
            for name, bits in task.items()
        }
        for task in stored["tasks"]
    ]
