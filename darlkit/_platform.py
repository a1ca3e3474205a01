"""Names of the machine's devices, for benchmark reports (private)."""

from __future__ import annotations

import platform

import torch


def device_name(device: torch.device | str = "cpu") -> str:
    """The CUDA device's name, or the CPU model from ``/proc/cpuinfo`` (else ``platform`` data)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"
