"""Names of the machine's devices, for benchmark reports (private)."""

from __future__ import annotations

import platform

import torch


def cpu_features() -> str:
    """The vector instruction set PyTorch dispatches to (``AVX2``, ``AVX512``, ...) and whether
    oneDNN has native bf16, e.g. ``"AVX512, native bf16"``: the same CPU model name covers machines
    of different generations, whose speed differs several-fold."""
    try:
        features = [torch.backends.cpu.get_cpu_capability()]
    except (AttributeError, RuntimeError):
        features = []
    try:
        if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            features.append("native bf16")
    except (AttributeError, RuntimeError):
        pass
    return ", ".join(features)


def device_name(device: torch.device | str = "cpu") -> str:
    """The CUDA device's name, or the CPU model from ``/proc/cpuinfo`` (else ``platform`` data)
    with :func:`cpu_features` in brackets."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "cpu"
    features = cpu_features()
    return f"{name} ({features})" if features else name
