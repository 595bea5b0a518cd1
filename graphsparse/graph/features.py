"""Sparse node features: bag-of-words graphs (Cora, CiteSeer, chameleon,
squirrel) have under 1% non-zero features, and a dense ``[N, F]`` input makes
the first layer's dropout and linear map cost O(N F) instead of O(nnz)."""
from __future__ import annotations

import warnings
from typing import Any, Callable, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor


def sparse_features(x: Tensor, max_density: float = 0.1) -> Tensor:
    """``x`` as a sparse CSR tensor when at most ``max_density`` of its
    entries are non-zero, else ``x`` unchanged. :class:`GatedGCN`,
    :class:`GatedResGCN` and :class:`GatedDAGNN` take either; on CiteSeer (0.85% non-zero, 3,703
    features) the sparse input makes a training epoch several times faster
    on the CPU (the dense input dropout alone is most of the epoch).

    Args:
        x (Tensor): ``[N, F]`` node features (dense, COO or CSR).
        max_density (float): the largest share of non-zeros that is
            converted. (default: ``0.1``)
    """
    if not 0.0 <= max_density <= 1.0:
        raise ValueError(f"'sparse_features' expects 'max_density' in [0, 1] "
                         f"(got {max_density!r})")
    if x.layout == torch.sparse_csr:
        return x
    with warnings.catch_warnings():      # "CSR support is in beta": not the user's concern
        warnings.simplefilter("ignore", UserWarning)
        if x.is_sparse:
            return x.coalesce().to_sparse_csr()
        if x.dim() == 2 and x.numel() > 0 and float((x != 0).float().mean()) <= max_density:
            return x.to_sparse_csr()
    return x


def feature_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    r""":func:`torch.nn.functional.dropout` that, on a sparse CSR ``x``, draws
    only for the stored entries: a dropped zero stays zero, so every entry
    has the distribution of dense dropout (kept with probability
    :math:`1 - p`, scaled by :math:`1 / (1 - p)`). Dense inputs go to
    ``F.dropout`` unchanged (the same random stream as before)."""
    if not training or p == 0.0 or x.layout != torch.sparse_csr:
        return F.dropout(x, p, training)
    values = x.values()
    keep = torch.rand(values.shape, device=values.device) >= p
    return torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(),
                                   values * keep / (1.0 - p), x.shape, check_invariants=False)


_MASK_BLOCK = 1 << 20   # entries of the float mask built at a time in backward


class _ReluDropout(torch.autograd.Function):
    # relu then dropout, keeping one boolean mask (1 byte per entry) for
    # backward instead of relu's output and dropout's noise (4 bytes each).
    @staticmethod
    def forward(ctx, h: Tensor, p: float, inplace: bool) -> Tensor:
        # F.dropout's noise on the CPU, drawn and scaled as it draws it:
        # Bernoulli(1 - p), then / (1 - p); the same random stream and values.
        noise = torch.empty_like(h).bernoulli_(1.0 - p).div_(1.0 - p)
        if inplace:
            ctx.mark_dirty(h)
            out = h.relu_()
        else:
            out = h.relu()
        out.mul_(noise)
        del noise
        # non-zero exactly where relu and dropout both pass (NaN included)
        ctx.save_for_backward(out != 0)
        ctx.keep_prob = 1.0 - p
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        (keep,) = ctx.saved_tensors
        out = torch.empty_like(grad, memory_format=torch.contiguous_format)
        flat_g, flat_k, flat_o = grad.reshape(-1), keep.reshape(-1), out.view(-1)
        # A float mask by blocks: a bool-by-float product casts every entry
        # (3x slower), and a whole float mask would cost 4 bytes per entry.
        for i in range(0, flat_g.numel(), _MASK_BLOCK):
            mask = flat_k[i:i + _MASK_BLOCK].to(grad.dtype).div_(ctx.keep_prob)
            torch.mul(flat_g[i:i + _MASK_BLOCK], mask, out=flat_o[i:i + _MASK_BLOCK])
        return out, None, None


def relu_dropout(h: Tensor, p: float, training: bool, inplace: bool = False) -> Tensor:
    r"""``F.dropout(h.relu(), p, training)``, the activation between two graph
    convolutions, with one boolean mask saved for backward,

    .. math::
        \mathbf{h}' = \frac{\mathbf{m}}{1 - p} \odot \mathbf{h}, \qquad
        \mathbf{m} = [\mathbf{h} > 0] \wedge [\xi \ge p], \quad \xi \sim U(0, 1),

    instead of relu's output and dropout's float noise: 1 byte per entry
    where the two functions keep 8 (on the CPU, ``F.dropout`` keeps a float
    mask), which is most of a deep GCN's activation memory. Values, gradients
    and random stream equal the two functions' on the CPU (the mask is drawn
    as ``F.dropout`` draws it there); on CUDA, whose ``F.dropout`` draws
    differently, the masks differ but have the same distribution (the
    gradient of a NaN entry that dropout drops is its upstream gradient times
    :math:`1 / (1 - p)` here, 0 there; its output is NaN in both).
    ``p = 0`` or ``training=False`` is ``h.relu()``.

    Args:
        h (Tensor): pre-activations, any shape (``[N, C]`` in a GCN).
        p (float): the dropout probability, in ``[0, 1)``.
        training (bool): apply dropout.
        inplace (bool): overwrite ``h`` (a tensor nothing else uses, such as
            a layer's fresh output): no new ``[N, C]`` tensor at all.
            (default: ``False``)

    Shapes:
        - **output:** the shape of ``h``
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"'relu_dropout' expects 'p' in [0, 1) (got {p!r})")
    if not training or p == 0.0 or h.layout != torch.strided:
        return F.dropout(h.relu_() if inplace else h.relu(), p, training)
    return _ReluDropout.apply(h, p, inplace)


class _DroppedInput:
    # What autograd keeps of a dropped-out input: the input and a boolean mask.
    __slots__ = ("x", "keep", "keep_prob", "version")

    def __init__(self, x: Tensor, keep: Tensor, keep_prob: float) -> None:
        self.x, self.keep, self.keep_prob, self.version = x, keep, keep_prob, x._version

    def tensor(self) -> Tensor:
        if self.x._version != self.version:
            raise RuntimeError("the input features of a dropped-out layer were modified in "
                               "place between the forward and the backward pass; clone them "
                               "before modifying them")
        return self.x * self.keep.to(self.x.dtype).div_(self.keep_prob)


_T = TypeVar("_T")


def dropout_recompute(fn: Callable[[Tensor], _T], x: Tensor, p: float, training: bool) -> _T:
    r"""``fn(F.dropout(x, p, training))``, where autograd keeps the dropped-out
    features as ``x`` and a boolean mask instead of a new float tensor, and
    recomputes them in the backward pass:

    .. math::
        \tilde X = \frac{M}{1 - p} \odot X, \qquad M_{ij} \sim \mathrm{Bernoulli}(1 - p).

    For the first layer of a GNN, whose input ``x`` (the node features) stays
    alive anyway: 1 byte per feature instead of 4 while the rest of the
    forward and backward passes run. The mask is drawn as ``F.dropout`` draws
    it on the CPU (the same random stream and values; any mask of the same
    distribution elsewhere). Inputs that need a gradient, sparse inputs, and
    ``training=False`` or ``p = 0`` simply call
    ``fn(feature_dropout(x, p, training))``. An in-place change of ``x``
    before the backward pass raises, as autograd does for saved tensors.

    Args:
        fn (callable): the layer, called once on the dropped-out features.
        x (Tensor): ``[N, F]`` node features.
        p (float): the dropout probability, in ``[0, 1)``.
        training (bool): apply dropout.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"'dropout_recompute' expects 'p' in [0, 1) (got {p!r})")
    if (not training or p == 0.0 or x.layout != torch.strided or x.requires_grad
            or not x.is_floating_point()):
        return fn(feature_dropout(x, p, training))
    noise = torch.empty_like(x).bernoulli_(1.0 - p).div_(1.0 - p)
    dropped = [x * noise]           # a list: the hooks must not keep it alive
    saved = _DroppedInput(x, noise != 0, 1.0 - p)
    del noise

    def pack(t: Tensor) -> Any:
        return saved if t is dropped[0] else t

    def unpack(obj: Any) -> Tensor:
        return obj.tensor() if isinstance(obj, _DroppedInput) else obj
    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        out = fn(dropped[0])
    dropped.clear()
    return out

