"""Device and dtype defaults. Weights: bf16 on CUDA GPUs that support it, fp32 otherwise. Training
autocasts to bf16 wherever the hardware computes it natively, a CPU with AMX included."""

from __future__ import annotations

import torch

from forgetless.errors import ForgetlessError

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def pick_device(device: str | None = None) -> torch.device:
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ForgetlessError(f"unknown device '{device}'", hint="use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ForgetlessError(f"device '{device}' requested but CUDA is not available")
    return dev


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 compute is faster than fp32 here. On a CPU only AMX makes it so: oneDNN runs bf16
    matmuls on its tiles (SmolLM2-135M: a forward+backward 1.4x faster under autocast); elsewhere on a
    CPU bf16 is emulated and slower."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private in torch 2.x; absent = no
        return bool(amx is not None and amx())
    return False


def pick_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """Evaluation weights. A CPU evaluates in fp32 even with AMX: in bf16 a greedy reply can change with
    the batch it is decoded in, and scores must not depend on the batch size."""
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" and native_bf16(device) else torch.float32
    if dtype not in DTYPES:
        raise ForgetlessError(f"unknown dtype '{dtype}'", hint="use " + ", ".join(DTYPES))
    return DTYPES[dtype]


def keep_freed_memory() -> bool:
    """Let glibc keep large freed blocks in the process instead of unmapping them (mallopt: mmap and trim
    thresholds raised to 1-2 GiB). PyTorch on a CPU frees and reallocates its big buffers (gradients,
    logits) every step; by default each one is a fresh mmap, page-faulted in again. Measured on 2 cores,
    SmolLM2-135M: a training step 10% faster, the Fisher's per-example backward 12%. The cost is that
    the process keeps its peak memory. Called by the CLI; a no-op (False) where glibc is absent."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, (1 << 31) - 1))
