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
