"""The device a process trains on and the precision it computes in.

`train.device` (`auto`: the rank's own GPU under torchrun, else CUDA when there is one, else the
CPU) and `train.precision` (`auto`: bf16 autocast on CUDA, fp32 as written on the CPU); TF32 for
fp32 matmuls on a GPU. The ranks themselves are distributed.py's.
"""

from __future__ import annotations

import os

import torch

from multitudes.errors import UserError
from multitudes.runs.distributed import world_size_from_env


def device_for_rank(name: str) -> str:
    """`auto` and `cuda` mean this rank's own GPU under torchrun (LOCAL_RANK)."""
    if name in ("auto", "cuda") and torch.cuda.is_available() and world_size_from_env() > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return name


def autocast_for(device, precision: str = "auto"):
    """The autocast context of `train.precision`: `auto` is bf16 autocast on CUDA and fp32 as
    written on the CPU; `bf16` autocasts on either (the CPU's native bf16 matmuls, where it has
    them); `fp32` nowhere. Weights, optimizer moments and the losses stay fp32 throughout."""
    kind = torch.device(device).type
    return torch.autocast(kind, dtype=torch.bfloat16, enabled=uses_bf16(device, precision))


def scoring_precision(precision: str) -> str:
    """The precision a run's members are scored in: fp32 when the run trains in fp32 (on a GPU
    too), else `auto`'s choice (bf16 on CUDA; fp32 on the CPU, where a bf16 run is still
    scored in fp32, as train.precision says)."""
    return "fp32" if precision == "fp32" else "auto"


def uses_bf16(device, precision: str = "auto") -> bool:
    """Whether `train.precision` autocasts to bf16 on this device (see `autocast_for`)."""
    return precision == "bf16" or (precision == "auto" and torch.device(device).type == "cuda")


def resolve_device(name: str) -> torch.device:
    """The device this process trains on: `auto` is CUDA when there is one (under torchrun,
    the rank's own GPU), else the CPU."""
    name = device_for_rank(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"train.device={name!r}: this torch build or machine has no CUDA "
                        f"(torch {torch.__version__}); use \"auto\" or \"cpu\"")
    if name.startswith("cuda"):
        # fp32 matmuls (the RNNs, which run outside autocast, and every fp32 run) on the tensor
        # cores: TF32 keeps fp32's range with a 10-bit mantissa, as bf16 autocast does less
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return torch.device(name)
