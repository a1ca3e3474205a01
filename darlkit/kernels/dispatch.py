"""Backend selection and input validation for the fused normalization ops.

Backends (the accepted values of every ``backend`` argument, see ``BACKENDS``):

- ``"eager"``: the reference composite of PyTorch ops (``darlkit.kernels.reference``).
- ``"compile"``: hand-written forward/backward (``darlkit.kernels.composite``) compiled with
  ``torch.compile`` (any device/dtype ``torch.compile`` supports; float64 included).
- ``"triton"``: the Triton kernels (``darlkit.kernels.triton_norm``; device code in
  ``darlkit.kernels.triton_kernels``); CUDA tensors, or CPU tensors through Triton's
  interpreter when ``TRITON_INTERPRET=1`` is set; float32, bfloat16 and float16.
- ``"auto"``: ``"triton"`` on CUDA when triton is installed and the dtype is supported;
  ``"compile"`` on CPU when a one-time probe compile succeeds and the input has at least
  ``AUTO_COMPILE_MIN_NUMEL`` elements (below that, compiled code saves nothing worth a compile);
  ``"eager"`` otherwise, and always while ``torch.compile`` traces an enclosing model
  (``torch.compiler.is_compiling()``), so the outer compile sees plain PyTorch ops.
"""

from __future__ import annotations

import math

import torch

from darlkit.kernels import composite
from darlkit.kernels.reference import instance_norm_act_reference, spade_norm_reference

__all__ = ["BACKENDS", "AUTO_COMPILE_MIN_NUMEL", "check_backend", "resolve_backend", "spade_norm", "instance_norm_act"]

BACKENDS: tuple[str, ...] = ("auto", "eager", "compile", "triton")
"""Accepted values of every ``backend`` argument."""

AUTO_COMPILE_MIN_NUMEL: int = 1 << 16
"""``"auto"`` uses the compiled CPU path only for inputs with at least this many elements."""

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _triton():
    from darlkit.kernels import triton_norm

    return triton_norm


def _is_compiling() -> bool:
    """``composite._in_trace()``: an enclosing Dynamo or ``torch.jit.trace`` trace records the
    call, so the plain bodies are traced instead of the compiled ones (kept as its own name so
    tests can patch it)."""
    return composite._in_trace()


def _in_dispatch_mode() -> bool:
    """True under a Python dispatch mode (FlopCounterMode, fake tensors, profilers' modes).

    ``torch.compile``'d callables cannot run inside such a mode, so ``"auto"`` uses eager there.
    """
    try:
        from torch.utils._python_dispatch import is_in_torch_dispatch_mode
    except ImportError:  # pragma: no cover - very old torch
        return False
    return bool(is_in_torch_dispatch_mode())


def check_backend(backend: object, name: str = "backend") -> str:
    """Validate a kernel backend name (what every ``backend=`` argument goes through).

    Args:
        backend: The value to check.
        name: Argument name quoted in the error.

    Returns:
        ``backend``, one of ``BACKENDS``.

    Raises:
        TypeError: If ``backend`` is not a str.
        ValueError: If ``backend`` is not one of ``BACKENDS`` (the message lists them).
    """
    if not isinstance(backend, str):
        raise TypeError(f"{name} must be a str, one of {BACKENDS}, got {type(backend).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"{name} must be one of {BACKENDS}, got {backend!r}")
    return backend


_check_backend = check_backend


def _check_scalars(eps: float, negative_slope: float | None) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite float >= 0, got {eps!r}")
    if negative_slope is not None and (
        isinstance(negative_slope, bool)
        or not isinstance(negative_slope, (int, float))
        or not math.isfinite(negative_slope)
    ):
        raise ValueError(f"negative_slope must be None or a finite float, got {negative_slope!r}")


def _check_x(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"x must be a floating tensor (float16/bfloat16/float32/float64), got {x.dtype}")
    if x.numel() == 0:
        raise ValueError(f"x must not be empty, got shape {tuple(x.shape)}")


def _check_map(name: str, t: torch.Tensor, x: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating tensor, got {t.dtype}")
    if t.device != x.device:
        raise ValueError(f"{name} must be on x's device {x.device}, got {t.device}")
    try:
        shape = torch.broadcast_shapes(t.shape, x.shape)
    except RuntimeError:
        shape = None
    if shape != x.shape:
        raise ValueError(
            f"{name} must have shape (N, C, H, W) = {tuple(x.shape)} (or broadcast to it), "
            f"got {tuple(t.shape)}"
        )


def _check_affine(name: str, t: torch.Tensor | None, x: torch.Tensor) -> None:
    if t is None:
        return
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(t).__name__}")
    if t.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating tensor, got {t.dtype}")
    if t.shape != (x.shape[1],):
        raise ValueError(f"{name} must have shape (C,) = ({x.shape[1]},), got {tuple(t.shape)}")
    if t.device != x.device:
        raise ValueError(f"{name} must be on x's device {x.device}, got {t.device}")


def _fused_unsupported(
    backend: str, tensors: list[torch.Tensor], negative_slope: float | None
) -> str | None:
    """Reason why ``backend`` cannot run these inputs, or ``None`` when it can."""
    if negative_slope is not None and negative_slope < 0:
        return "negative_slope < 0 (the fused backward takes the LeakyReLU mask from the output)"
    x = tensors[0]
    if backend == "triton":
        tn = _triton()
        if not tn.HAS_TRITON:
            return "triton is not installed (pip install 'darlkit[triton]')"
        if not tn.triton_usable(x.device):
            return (
                f"Triton needs a CUDA tensor (got device {x.device}); on CPU set "
                "TRITON_INTERPRET=1 to run Triton's interpreter"
            )
        bad = [t.dtype for t in tensors if t.dtype not in tn.TRITON_DTYPES]
        if bad:
            return f"the Triton kernels support float32/bfloat16/float16, got {bad[0]}"
    elif (
        backend == "compile"
        and x.device.type == "cpu"
        and not _is_compiling()  # an enclosing compile traces the plain bodies instead
        and not composite.compile_available()
    ):
        return "torch.compile does not work on this machine (probe compile failed)"
    return None


def resolve_backend(
    backend: str,
    x: torch.Tensor,
    *others: torch.Tensor | None,
    negative_slope: float | None = None,
) -> str:
    """Concrete backend (``"eager"``, ``"compile"`` or ``"triton"``) for a call.

    Args:
        backend: One of ``BACKENDS``.
        x: Input of shape (N, C, H, W).
        *others: The other tensor arguments (modulation maps or affine parameters; ``None``
            entries are ignored), checked for dtype support.
        negative_slope: LeakyReLU slope, or ``None``.

    Returns:
        The backend that will run. ``"auto"`` never fails: it falls back to ``"eager"``.

    Raises:
        ValueError: If ``backend`` is unknown, or an explicit ``"compile"``/``"triton"`` cannot
            run these inputs (the message says why).
    """
    _check_backend(backend)
    tensors = [x] + [t for t in others if t is not None]
    if backend == "eager":
        return "eager"
    if backend == "auto":
        if _is_compiling() or _in_dispatch_mode():
            return "eager"
        if x.device.type == "cuda":
            return "triton" if _fused_unsupported("triton", tensors, negative_slope) is None else "eager"
        if x.device.type == "cpu" and x.numel() >= AUTO_COMPILE_MIN_NUMEL:
            if _fused_unsupported("compile", tensors, negative_slope) is None:
                return "compile"
        return "eager"
    reason = _fused_unsupported(backend, tensors, negative_slope)
    if reason is not None:
        raise ValueError(f"backend={backend!r} cannot run this call: {reason}")
    return backend


def spade_norm(
    x: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    *,
    eps: float = 1e-5,
    negative_slope: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """SPADE modulation ``act((x - mean) * rstd * (1 + gamma) + beta)``.

    ``mean`` and ``rstd = 1 / sqrt(var + eps)`` are per (n, c) plane over H x W (instance norm
    without affine, biased variance); ``act`` is LeakyReLU(``negative_slope``) or the identity.
    Fused backends compute statistics in float32 (float64 for float64 inputs) and write the
    output in the promoted dtype of the inputs and in ``x``'s memory format (channels_last kept).

    Args:
        x: Input of shape (N, C, H, W), float16/bfloat16/float32/float64, any real values.
        gamma: Scale offsets of shape (N, C, H, W) (or broadcastable to it); the scale is
            ``1 + gamma``.
        beta: Shifts of shape (N, C, H, W) (or broadcastable to it).
        eps: Variance epsilon, finite and >= 0.
        negative_slope: LeakyReLU slope (the paper's SPADE blocks use 0.2), or ``None`` for no
            activation. The fused backends need ``negative_slope >= 0`` (``"auto"`` falls back
            to eager otherwise).
        backend: One of ``BACKENDS`` (see ``resolve_backend``).

    Returns:
        Tensor of shape (N, C, H, W). A 1 x 1 plane has zero variance, so its output is
        ``act(beta)``.

    Raises:
        TypeError: If an argument is not a floating tensor.
        ValueError: On a wrong shape, a device mismatch, a bad ``eps``/``negative_slope``, an
            unknown backend, or an explicit backend that cannot run the inputs.
    """
    _check_backend(backend)
    _check_x(x)
    _check_map("gamma", gamma, x)
    _check_map("beta", beta, x)
    _check_scalars(eps, negative_slope)
    which = resolve_backend(backend, x, gamma, beta, negative_slope=negative_slope)
    if which == "eager":
        return spade_norm_reference(x, gamma, beta, eps, negative_slope)
    gamma = gamma.expand_as(x)
    beta = beta.expand_as(x)
    slope = None if negative_slope is None else float(negative_slope)
    if which == "triton":
        return _triton().TritonSPADENormFunction.apply(x, gamma, beta, float(eps), slope)
    return composite.SPADENormFunction.apply(x, gamma, beta, float(eps), slope, not _is_compiling())


def instance_norm_act(
    x: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    *,
    eps: float = 1e-5,
    negative_slope: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Affine instance norm with an optional fused LeakyReLU: ``act((x - mean) * rstd * w_c + b_c)``.

    Args:
        x: Input of shape (N, C, H, W), float16/bfloat16/float32/float64.
        weight: Per-channel scale of shape (C,), or ``None`` (scale 1).
        bias: Per-channel shift of shape (C,), or ``None`` (shift 0).
        eps: Variance epsilon, finite and >= 0.
        negative_slope: LeakyReLU slope, or ``None`` for no activation (fused backends need
            ``>= 0``).
        backend: One of ``BACKENDS`` (see ``resolve_backend``).

    Returns:
        Tensor of the shape and dtype of ``x``; fused backends keep ``x``'s memory format. A
        1 x 1 plane normalizes to 0, so its output is ``act(b_c)``.

    Raises:
        TypeError: If an argument has a wrong type or a non-floating dtype.
        ValueError: On a wrong shape, a device mismatch, a bad ``eps``/``negative_slope``, an
            unknown backend, or an explicit backend that cannot run the inputs.
    """
    _check_backend(backend)
    _check_x(x)
    _check_affine("weight", weight, x)
    _check_affine("bias", bias, x)
    _check_scalars(eps, negative_slope)
    which = resolve_backend(backend, x, weight, bias, negative_slope=negative_slope)
    if which == "eager":
        return instance_norm_act_reference(x, weight, bias, eps, negative_slope)
    slope = None if negative_slope is None else float(negative_slope)
    if which == "triton":
        return _triton().TritonInstanceNormActFunction.apply(x, weight, bias, float(eps), slope)
    return composite.InstanceNormActFunction.apply(
        x, weight, bias, float(eps), slope, not _is_compiling()
    )
