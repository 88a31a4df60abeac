"""The safe LRN as a PyTorch custom operator: ``torch.ops.tvm_lrn.local_response_norm``.

Registered with ``torch.library.custom_op``, so that torch.compile, torch.export and
inductor treat it as one opaque op: the forward runs the project's TVM kernel on the
tensor's own memory (CPU, or CUDA for a tensor on a GPU; zero-copy through DLPack,
:func:`tvm_lrn.run`), a fake implementation gives its output's shape, dtype and strides
to tracing, and the backward is the derivative of LRN computed in float64 (so that it
does not overflow where the forward does not, for float32, float16 and bfloat16 inputs).

On the CPU the op's kernel runs on the calling thread (built for
:func:`tvm_lrn.target.host_target_on_one_core`): the cores belong to torch's intra-op
threads, and waking TVM's thread pool between them costs more than it gains
(:mod:`tvm_lrn.lower.one_core`).

The op keeps its input's memory format: a channels-last input (as inductor and
``model.to(memory_format=torch.channels_last)`` lay out convolutions' outputs) is LRN
over the last axis of its memory, read where it is, and its output is channels-last too.

:func:`replace_lrn` rewrites the ``F.local_response_norm`` calls of an FX graph (as
Dynamo captures them) into this op; :func:`tvm_lrn.frontend.dynamo.tvm_lrn_backend`
does so before it hands the graph to inductor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["local_response_norm", "replace_lrn"]

_NAME = "tvm_lrn::local_response_norm"


#: The channels-last memory format of each rank that has one.
_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """The format of the op's output: channels-last for a channels-last input (that is
    not also contiguous), else contiguous (inputs of other strides are copied)."""
    channels_last = _CHANNELS_LAST.get(x.dim())
    if channels_last is None or x.is_contiguous():
        return torch.contiguous_format
    return (
        channels_last if x.is_contiguous(memory_format=channels_last) else torch.contiguous_format
    )


@torch.library.custom_op(_NAME, mutates_args=())
def local_response_norm(
    x: torch.Tensor, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0
) -> torch.Tensor:
    """``F.local_response_norm(x, size, alpha, beta, k)`` over dim 1, without overflow.

    Parameters
    ----------
    x : torch.Tensor
        Rank >= 3 (N, C, ...), float16, bfloat16, float32 or float64, on the CPU or a
        CUDA GPU.
    size, alpha, beta, k
        As in :func:`torch.nn.functional.local_response_norm`.

    Returns
    -------
    torch.Tensor
        Same shape, dtype and device as ``x``; channels-last if ``x`` is.
    """
    from ..eager import run
    from ..target import host_target_on_one_core

    if x.dim() < 3:
        raise ValueError(f"local_response_norm needs an input of rank >= 3, got {x.dim()}")
    target = "cuda" if x.is_cuda else host_target_on_one_core()
    memory, axis = x, 1
    if _memory_format(x) is not torch.contiguous_format:  # N, spatial..., C: contiguous
        memory, axis = x.permute(0, *range(2, x.dim()), 1), x.dim() - 1
    y = run(memory, size=size, alpha=alpha, beta=beta, bias=k, axis=axis, target=target)
    return y if axis == 1 else y.movedim(axis, 1)


@local_response_norm.register_fake
def _(x, size, alpha=1e-4, beta=0.75, k=1.0):
    return torch.empty_like(x, memory_format=_memory_format(x))


def _window_sums(t: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """``s[:, c] = sum(t[:, c - before : c + after + 1])`` along dim 1, zero-padded."""
    padded = F.pad(t.movedim(1, -1), (before, after))
    return padded.unfold(-1, before + after + 1, 1).sum(-1).movedim(-1, 1)


def _backward(ctx, grad):
    """``dx_j = g_j d_j^-b - (2 a b / n) x_j sum_{i : j in W(i)} g_i x_i d_i^(-b-1)``
    with ``d_i = k + (a / n) sum_{j in W(i)} x_j^2`` (PyTorch's window W(i) is
    ``[i - n // 2, i + (n - 1) // 2]``), in float64."""
    (x,) = ctx.saved_tensors
    n, alpha, beta, k = ctx.size, ctx.alpha, ctx.beta, ctx.k
    x64, g64 = x.double(), grad.double()
    d = k + (alpha / n) * _window_sums(x64 * x64, n // 2, (n - 1) // 2)
    inner = g64 * x64 * d.pow(-beta - 1)
    back = _window_sums(inner, (n - 1) // 2, n // 2)  # the transposed window
    dx = g64 * d.pow(-beta) - (2 * alpha * beta / n) * x64 * back
    return dx.to(x.dtype), None, None, None, None


def _setup_context(ctx, inputs, output):
    x, size, alpha, beta, k = inputs
    ctx.save_for_backward(x)
    ctx.size, ctx.alpha, ctx.beta, ctx.k = size, alpha, beta, k


local_response_norm.register_autograd(_backward, setup_context=_setup_context)


def replace_lrn(gm: torch.fx.GraphModule) -> int:
    """Rewrite every ``F.local_response_norm`` call of ``gm`` into the custom op.

    Parameters
    ----------
    gm : torch.fx.GraphModule
        Changed in place (and recompiled).

    Returns
    -------
    int
        How many calls were rewritten.
    """
    op = torch.ops.tvm_lrn.local_response_norm.default
    count = 0
    for node in gm.graph.nodes:
        if node.op == "call_function" and node.target is F.local_response_norm:
            names = ("input", "size", "alpha", "beta", "k")
            bound = dict(zip(names, node.args, strict=False)) | dict(node.kwargs)
            defaults = {"alpha": 1e-4, "beta": 0.75, "k": 1.0}
            args = [bound[n] if n in bound else defaults[n] for n in names]
            node.target, node.args, node.kwargs = op, tuple(args), {}
            count += 1
    if count:
        gm.recompile()
    return count
