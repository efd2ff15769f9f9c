"""What crosses between the host and the device in a step: the batch in, the losses out.

On a GPU each crossing is a wait; a step makes one of each (population.py).
"""

from __future__ import annotations

import torch


def to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on the device: on a GPU from pinned memory without waiting for the copy (the
    step's kernels queue behind it); on the CPU as it is."""
    if device.type != "cuda":
        return batch.to(device)
    return batch.pin_memory().to(device, non_blocking=True)


def host_values(rows: list[list[torch.Tensor | None]], width: int = 3
                ) -> list[list[float | None]]:
    """The Python floats of every tensor in `rows` (None stays None, an empty row reads as
    `width` Nones), through one stacked copy to the host instead of one `.item()` each. Each
    value goes through float64, which holds a float32 or bf16 exactly: the same floats `.item()`
    gives; a bool reads 1.0 or 0.0."""
    tensors = [t for row in rows for t in row if t is not None]
    values = iter(torch.stack([t.detach().double() for t in tensors]).tolist()
                  if tensors else [])
    return [[None if t is None else next(values) for t in row] if row else [None] * width
            for row in rows]
