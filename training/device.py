"""Where training runs: one rule for the SR trainer and the LLM stages."""

from __future__ import annotations

import torch


def resolve_device(device: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; anything else as torch reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's parameters live (cpu for a model without any, e.g. Popularity)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def device_label(device: torch.device) -> str:
    """What a timing was measured on, e.g. "cuda: NVIDIA H100 80GB HBM3" or "cpu: 2 threads"; timings
    are cached and compared only under the same label."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"{device.type}: {torch.get_num_threads()} threads"


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so a wall-clock timing covers the work (no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
