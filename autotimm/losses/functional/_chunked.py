"""The engine of the element-wise sigmoid losses (focal, asymmetric, quality focal, varifocal):
an analytic gradient computed in the forward pass, in cache-sized steps on the CPU.

A loss plugs in a *terms* function that, for one step of logits ``x`` and targets ``t``,
returns ``(value, factor, dx)``: the element-wise loss is ``value * factor`` and its
derivative with respect to ``x`` is ``dx * factor`` (``factor`` may be ``None``, meaning 1).
Keeping the factor apart lets a loss leave a term that is infinite at a point (``q^(gamma-1)``)
out of both products, and lets the engine multiply in an element weight once.

Every function here writes into the step's scratch buffers (``out=`` or in place): fresh
temporaries per step would be fresh memory, and page faults, every time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from autotimm.losses._types import Reduction
from autotimm.losses.functional._utils import inner_reduction

__all__ = [
    "Scratch",
    "Terms",
    "TermsFn",
    "all_zero_or_one",
    "by_target",
    "chunked_loss",
    "power",
    "softplus",
    "softplus_of_minus_abs",
]

Terms = tuple[Tensor, Tensor | None, Tensor | None]
"""``(value, factor, dx)`` of one step: loss ``value * factor``, gradient ``dx * factor``."""

TermsFn = Callable[[Tensor, Tensor, bool, bool, "Scratch"], Terms]
"""``terms(x, t, hard, need_grad, scratch)``; ``hard``: every target of the call is 0 or 1."""


class Scratch:
    """Buffers that every step of one call writes into, shaped like the step."""

    def __init__(self, like: Tensor, elements: int, count: int) -> None:
        self.buffers = [
            torch.empty(elements, dtype=like.dtype, device=like.device) for _ in range(count)
        ]
        self.zero, self.half, self.one = (
            torch.tensor(v, dtype=like.dtype, device=like.device) for v in (0.0, 0.5, 1.0)
        )
        self._views: dict[tuple[int, ...], list[Tensor]] = {}
        self._constants: dict[float, Tensor] = {}

    def constant(self, value: float) -> Tensor:
        """``value`` as a 0-dim tensor of the buffers' dtype (made once per call)."""
        if value not in self._constants:
            self._constants[value] = self.one.new_tensor(value)
        return self._constants[value]

    def views(self, like: Tensor) -> list[Tensor]:
        """The buffers as tensors of ``like``'s shape (a step may be shorter than the first)."""
        shape = tuple(like.shape)
        if shape not in self._views:  # made once per shape: every step but the last shares it
            self._views[shape] = [b[: like.numel()].view(shape) for b in self.buffers]
        return self._views[shape]


def softplus_of_minus_abs(x: Tensor, out: Tensor) -> Tensor:
    """``log(1 + exp(-|x|))`` into ``out``: exact for every ``x`` (``exp`` then ``log1p``,
    about half the time of ``logaddexp`` or ``softplus`` on the CPU)."""
    return torch.abs(x, out=out).neg_().exp_().log1p_()


def softplus(x: Tensor, out: Tensor, spare: Tensor) -> Tensor:
    """``softplus(x) = max(x, 0) + log(1 + exp(-|x|))`` into ``out`` (``spare`` is used):
    a sum of two non-negative terms, so exact in both tails (``exp(x)`` for ``x << 0``)."""
    tail = softplus_of_minus_abs(x, spare)
    return torch.clamp_min(x, 0, out=out).add_(tail)


def power(base: Tensor, exponent: float, out: Tensor) -> Tensor:
    """``base ** exponent`` into ``out``, for ``base >= 0`` (``> 0`` if ``exponent < 0``) and
    ``exponent != 0``. Powers 1 to 4 are products and 1/2 a square root; others are
    ``exp(exponent * log(base))`` (``base = 0`` gives ``exp(-inf) = 0``), several times faster
    than ``pow`` on the CPU, within ``|exponent * log(base)|`` ulps (about 1e-5 relative at
    ``base = 1e-13``, exponent 2.5)."""
    if exponent == 1:
        return out.copy_(base)
    if exponent == 0.5:
        return torch.sqrt(base, out=out)
    if exponent == 2:
        return torch.mul(base, base, out=out)
    if exponent == 3:
        return torch.mul(base, base, out=out).mul_(base)
    if exponent == 4:
        return torch.mul(base, base, out=out).square_()
    return torch.log(base, out=out).mul_(exponent).exp_()


_CHUNK = 1 << 16
"""Elements per thread and step on the CPU: a step's scratch buffers stay in the cache, so
the exact kernels run at their arithmetic speed instead of waiting on memory."""


def _steps(x: Tensor) -> list[slice]:
    """Ranges of ``x``'s first dimension that hold about ``_CHUNK`` elements per thread."""
    rows = x.shape[0]
    if x.device.type != "cpu":
        return [slice(0, rows)]
    per_row = max(x.numel() // max(rows, 1), 1)
    step = max(_CHUNK * torch.get_num_threads() // per_row, 1)
    return [slice(start, min(start + step, rows)) for start in range(0, max(rows, 1), step)]


def by_target(
    negative: Tensor | float, positive: Tensor | float, t: Tensor, out: Tensor, scratch: Scratch
) -> Tensor:
    """``negative`` where ``t = 0`` and ``positive`` where ``t = 1`` (exactly: ``lerp`` returns
    its end points at weights 0 and 1), into ``out``; numbers or tensors of ``t``'s shape."""
    if not isinstance(negative, Tensor) and not isinstance(positive, Tensor):
        return torch.mul(t, positive - negative, out=out).add_(negative)
    start = negative if isinstance(negative, Tensor) else scratch.constant(negative)
    end = positive if isinstance(positive, Tensor) else scratch.constant(positive)
    return torch.lerp(start, end, t, out=out)


def all_zero_or_one(t: Tensor) -> bool:
    """Whether every value of ``t`` is exactly 0 or 1 (in cache-sized steps, stopping at the
    first step that holds another value)."""
    flat = t.reshape(-1)
    steps = _steps(flat)
    scratch = torch.empty(flat[steps[0]].numel(), dtype=t.dtype, device=t.device)
    return all(_all_zero_or_one(flat[step], scratch[: flat[step].numel()]) for step in steps)


def _all_zero_or_one(t: Tensor, scratch: Tensor) -> bool:
    """Whether every value is exactly 0 or 1: then t - t^2 is 0 everywhere, and only then."""
    if t.numel() == 0:
        return True
    spread = torch.addcmul(t, t, t, value=-1.0, out=scratch)
    low, high = torch.aminmax(spread)  # NaN if any value is NaN
    return low.item() == 0 and high.item() == 0


def _write(into: Tensor, step: slice, value: Tensor, factor: Tensor | None) -> None:
    """``into[step] = value * factor``, written in place (one pass, no temporary)."""
    if factor is None:
        into[step] = value
    else:
        torch.mul(value, factor, out=into[step])


class _ChunkedLoss(torch.autograd.Function):
    """An element-wise loss whose gradient is computed in the forward pass.

    Upstream gradients of a summed or element-wise loss only ever scale ``dl/dx`` element-wise,
    so the forward pass computes ``dl/dx`` right away from the temporaries it already has and
    saves only that one tensor; the backward pass is one multiplication.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        t: Tensor,
        weight: Tensor | None,
        terms: TermsFn,
        buffers: int,
        summed: bool,
        need_grad: bool,
        hard: bool,
        scale: float,
    ) -> Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            # steps over the elements, or over rows [first dimension, rest] when a weight
            # broadcasts (e.g. one per class), so that it need not be expanded in memory
            rows = x.shape[0] if x.ndim else 1
            xs = x.reshape(-1) if weight is None else x.reshape(rows, x.numel() // max(rows, 1))
            ts = t.reshape(xs.shape)
            ws = None if weight is None else weight.expand_as(x).reshape(xs.shape)
            out = None if summed else torch.empty_like(xs)
            grad = torch.empty_like(xs) if need_grad else None
            totals = []
            steps = _steps(xs)
            scratch = Scratch(x, xs[steps[0]].numel(), count=buffers)
            for step in steps:
                x_step, t_step = xs[step], ts[step]
                value, factor, dx = terms(x_step, t_step, hard, need_grad, scratch)
                if dx is not None and scale != 1:  # the mean's 1/n, in the cache
                    dx = dx.mul_(scale)
                if ws is not None:
                    factor = ws[step] if factor is None else factor.mul_(ws[step])
                if summed:
                    value = value.reshape(-1)
                    totals.append(
                        value.sum() if factor is None else torch.dot(factor.reshape(-1), value)
                    )
                else:
                    assert out is not None
                    _write(out, step, value, factor)
                if grad is not None:
                    assert dx is not None
                    _write(grad, step, dx, factor)
            if grad is not None:
                ctx.save_for_backward(grad.view_as(x))
        if summed:
            total = torch.stack(totals).sum() if totals else x.new_zeros(())
            return total * scale if scale != 1 else total
        assert out is not None
        return out.view_as(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        (grad,) = ctx.saved_tensors
        rest = (None,) * 8
        if grad_output.ndim == 0 and grad.device.type == "cpu" and grad_output.item() == 1:
            # the loss itself was differentiated (loss.backward()): the saved gradient is the
            # answer, and autograd hands this very tensor on (no copy, no new memory)
            return grad, *rest
        return grad * grad_output, *rest


def chunked_loss(
    x: Tensor,
    t: Tensor,
    terms: TermsFn,
    *,
    buffers: int,
    reduction: Reduction,
    weight: Tensor | None = None,
    hard: bool | None = None,
) -> Tensor:
    """Reduce the element-wise loss that ``terms`` defines, with its analytic gradient.

    ``x``: float logits (contiguous); ``t``: targets of ``x``'s shape and dtype; ``buffers``:
    how many scratch buffers ``terms`` uses; ``weight``: a non-negative multiplier that
    broadcasts to ``x`` (no gradient). ``hard``: whether every target is 0 or 1 (``None``:
    find out, in a pass over the targets that stops at the first step with another value).
    ``"mean"`` is over all elements.
    """
    if hard is None:
        hard = all_zero_or_one(t)
    need_grad = torch.is_grad_enabled() and x.requires_grad
    summed = inner_reduction(reduction) == "sum"
    scale = 1 / max(x.numel(), 1) if reduction == "mean" else 1.0
    out: Tensor = _ChunkedLoss.apply(x, t, weight, terms, buffers, summed, need_grad, hard, scale)
    return out
