r"""A learnable sparse adjacency: the differentiable sparse gate on the rows
and columns of a candidate adjacency, followed by a normalization
(paper, section "GCN", Fig. 3)."""
from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import group_reduce, sparse_gate
from ..core.gate import ACTIVATIONS
from ..core.penalty import ragged_pnorm_penalty
from ..utils.validation import check_choice, check_finite, check_p, check_positive_int
from ._gate import gate_product
from ._inputs import Candidates as _Candidates
from ._inputs import as_edge_list, build_candidates, first_of_each
from ._ops import scale_edges, select_edges
from ._validate import assert_finite, check_features
from .norm import _row_norm, _sym_norm
from .sinkhorn import _sinkhorn

GROUPS = ("row", "col", "both")
# Logits are bounded softly from below, so that a strength never leaves the
# float32 range in which Sinkhorn's gradient (of order 1/strength) is finite.
LOGIT_FLOOR = -15.0
NORMALIZATIONS = ("sinkhorn", "balanced", "row", "sym", "none")
MARGINALS = ("uniform", "degree")
REDUCTIONS = ("sum", "mean")
ZEROS = ("drop", "keep", "auto")
# forward(zeros="auto") drops exact zeros once they are this share of the
# candidates: below it, a product over the few extra entries is cheaper than
# a new CSR pattern of the surviving edges per step (derived from the stored
# list's, no sort: _ops.select_edges).
ZERO_SHARE_TO_DROP = 0.25


def _normalize_edges(row: Tensor, col: Tensor, weight: Tensor, num_nodes: int,
                    normalization: str, num_iters: int = 10,
                    edge_index: Optional[Tensor] = None,
                    degrees: Optional[Tensor] = None) -> Tensor:
    r"""Dispatches to the normalizations of :mod:`~graphsparse.graph.norm` and
    :mod:`~graphsparse.graph.sinkhorn` (no input checks: the hot path).
    ``degrees`` ``[N]``: Sinkhorn toward them as row and column sums, then
    :math:`D^{-1/2} \cdot D^{-1/2}` (``marginals="degree"``; None: ones)."""
    if normalization in ("sinkhorn", "balanced"):
        balanced = normalization == "balanced"
        if degrees is None:
            return _sinkhorn(row, col, weight, num_nodes, num_iters, balanced,
                             edge_index=edge_index)
        out = _sinkhorn(row, col, weight, num_nodes, num_iters, balanced,
                        edge_index=edge_index, marginals=degrees.expand(2, num_nodes))
        s = degrees.rsqrt().to(out.dtype)
        return scale_edges(out, s, row, s, col)
    if normalization == "row":
        return _row_norm(row, weight, num_nodes)
    if normalization == "sym":
        return _sym_norm(row, col, weight, num_nodes)
    return weight


def _reverse_ids(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Position of the reverse edge ``(i, j)`` of every edge ``(j, i)`` of a
    coalesced, symmetric ``edge_index``."""
    keys = edge_index[0] * num_nodes + edge_index[1]
    return torch.searchsorted(keys, edge_index[1] * num_nodes + edge_index[0])


class GatedAdjacency(nn.Module):
    r"""A sparse adjacency learned with the differentiable sparse gate (paper,
    section "GCN"): every row and every column of the candidate adjacency is a
    competition group, and the gated matrix is normalized, by default with
    Sinkhorn toward a doubly stochastic matrix.

    Convention (PyG's ``source_to_target`` flow): the candidate edge
    ``(j, i)`` is the entry :math:`A_{i,j}`; row :math:`i` holds the edges
    *into* node :math:`i` (its in-coming neighbours compete), column
    :math:`j` the edges *out of* :math:`j`.

    With gate logits :math:`\alpha_{ij}` (free parameters, one per candidate
    edge as in the paper, or computed by a ``scorer`` from node features) and
    :math:`\gamma = \sigma(\alpha)`, every group is thresholded by
    :func:`~graphsparse.core.sparse_gate` (``normalization="none"``):

    .. math::
        r_{ij} = \bigl(\gamma_{ij} - \sigma(\beta^r_i) \textstyle\sum_{k} \gamma_{ik}\bigr)_+,
        \qquad
        c_{ij} = \bigl(\gamma_{ij} - \sigma(\beta^c_j) \textstyle\sum_{k} \gamma_{kj}\bigr)_+ .

    The unnormalized adjacency is :math:`\tilde A_{ij} = r_{ij}` (``groups="row"``),
    :math:`c_{ij}` (``"col"``) or :math:`r_{ij}\,c_{ij}` (``"both"``). The
    paper parameterizes "each row and column of :math:`\tilde A` similarly as
    in Eq. (3)"; the product is zero as soon as the edge loses *either*
    competition, and while it is alive both thresholds receive its gradient
    (a ``min`` would feed only the binding one). Its scale, roughly
    :math:`\gamma^2`, does not matter: every normalization below rescales rows
    and columns. Then :math:`A` is

    * ``"sinkhorn"``: :func:`~graphsparse.graph.sinkhorn` (rows and columns
      sum to one, in the limit; with ``marginals="degree"`` see below);
      ``"balanced"``: the balanced variant;
    * ``"row"``: :math:`D^{-1}\tilde A`; ``"sym"``: :math:`D^{-1/2}\tilde A D^{-1/2}`;
    * ``"none"``: :math:`\tilde A` itself.

    Entries that lose a competition are **exactly zero** and :meth:`forward`
    drops them; they still receive gradient through the thresholds (which
    sum over the whole group), so they can come back.

    Thresholds: with free logits, one :math:`\beta^r_i` per row and one
    :math:`\beta^c_j` per column, initialized to the paper's
    :math:`-\log(n^2+n-1)` of the group size :math:`n` (``beta_row``,
    ``beta_col``). With a scorer, :math:`\beta = -\log(n^2+n-1) + \delta`
    with one learned offset :math:`\delta` for rows and one for columns
    (``beta_row``, ``beta_col`` are then scalars), so that the adjacency
    applies to any graph: ``adj(x, edge_index)``.

    The logits enter the gate through a soft lower bound,
    :math:`\alpha \mapsto -15 + \mathrm{softplus}(\alpha + 15)` (the identity
    up to :math:`10^{-4}` for :math:`\alpha > -5`): with an unbounded
    :math:`\alpha \to -\infty` a whole row could fall to strengths near
    :math:`10^{-40}`, where the exact gradient of the normalization (of order
    one over the strength) overflows float32 and turns into NaN.

    With ``symmetric=True`` the candidates are made undirected, the logits of
    :math:`(i, j)` and :math:`(j, i)` are one parameter (one per undirected
    edge) and the row and column thresholds of a node are one; with
    ``groups="both"`` (required) :math:`\tilde A` is then symmetric, and stays
    so under ``"sym"``, ``"balanced"`` and ``"none"``.

    Memory is :math:`O(E)` for the gate and for Sinkhorn (whose backward
    keeps :math:`O(N)` values per iteration, see
    :func:`~graphsparse.graph.sinkhorn`), time :math:`O(E)` for the gate and
    :math:`O(E \cdot \text{num\_iters})` for Sinkhorn; nothing is
    :math:`N \times N`.

    **Alignment with the input edges.** The candidates :attr:`edge_index` are
    the input edges coalesced (sorted, duplicates merged) plus the added
    self-loops. :attr:`input_id` ``[E_cand]`` holds the position in the input
    ``edge_index`` of every candidate (``-1`` for an added self-loop; int32
    below :math:`2^{31}` edges, like :attr:`input_to_cand`, the candidate of
    every input edge);
    ``adj(return_edge_id=True)`` also returns the candidate id of every
    surviving edge, so ``adj.input_id[edge_id]`` are their input positions
    (to gather ``edge_attr``, a loader's ``e_id``, or to put an explainer's
    mask back onto the input edges), and :meth:`input_values` gives the learned
    weight of every input edge (``> 0``: a dense mask of the survivors).

    Args:
        edge_index (LongTensor or sparse matrix): ``[2, E]`` candidate edges in
            any order, duplicates allowed; also a PyG ``EdgeIndex``, a
            ``torch.sparse`` matrix or a ``torch_sparse.SparseTensor`` ``S``
            with ``S[j, i]`` the weight of the edge ``j -> i`` (its values
            are then ``edge_weight``).
        num_nodes (int): ``N``; inferred from ``edge_index`` when None.
        edge_weight (Tensor, optional): ``[E]`` non-negative input strengths
            :math:`w_{ij}`: the gated weight of every candidate is multiplied by
            it before the normalization, :math:`\tilde A_{ij} \leftarrow w_{ij}\tilde A_{ij}`
            (duplicates: summed; added self-loops: 1). A strength of zero is
            an edge that never carries a message. (default: ``None``, all one)
        groups (str): ``"row"``, ``"col"`` or ``"both"``. (default: ``"both"``)
        normalization (str): ``"sinkhorn"``, ``"balanced"``, ``"row"``,
            ``"sym"`` or ``"none"``. (default: ``"sinkhorn"``)
        num_iters (int): Sinkhorn iterations. (default: ``10``)
        marginals (str): Sinkhorn's target row and column sums:
            ``"uniform"`` (one: doubly stochastic, the paper's) or
            ``"degree"``: the degrees :math:`d` of the candidate graph (the
            row sums of its input strengths, self-loops included; computed
            once, a mini-batch or another graph gets its own), in GCN's
            frame: :math:`A = D^{-1/2} S D^{-1/2}` with :math:`S` the
            Sinkhorn scaling of :math:`\tilde A` whose rows and columns sum
            to :math:`d`. On an undirected candidate graph :math:`A` starts
            at GCN's :math:`D^{-1/2}(A+I)D^{-1/2}` (unit gates: :math:`S` is
            the candidate matrix itself), every node keeps its total weight
            :math:`d_i` while the gates prune (a leaf of a hub keeps its
            share, where a doubly stochastic matrix gives the hub's column of
            one to all its leaves), and :math:`A^\top \sqrt d = \sqrt d`
            after every iteration, so the spectral radius of :math:`A` is
            exactly one (Collatz-Wielandt), as GCN's: many propagation hops
            (DAGNN) neither blow up nor vanish. ``"sinkhorn"`` and
            ``"balanced"`` only. (default: ``"uniform"``)
        add_self_loops (bool): add the missing self-loops to the candidates.
            (default: ``True``)
        symmetric (bool): tie the gates of :math:`(i, j)` and :math:`(j, i)`.
            (default: ``False``)
        scorer (nn.Module, optional): maps ``(x, edge_index)`` to ``[E]``
            logits, e.g. :class:`~graphsparse.graph.EdgeScorer`; ``x`` is then
            required by every method. (default: ``None``, free logits)
        activation (str): ``"sigmoid"`` (the paper) or ``"exp"``.
        gate_self_loops (bool): self-loops compete in their row and column
            like any edge (the paper). With ``False`` they are kept out of
            the competitions and always on: before the normalization the
            self-loop of node :math:`i` gets the largest gated weight of its
            row, :math:`\tilde A_{ii} = \max_{j \ne i} \tilde A_{ij}` (one
            where the whole row is pruned), i.e. the weight of its strongest
            neighbour, as in GCN's :math:`A + I`. Otherwise a row whose
            gates are all alike is pruned at once, self-loop included, and
            its node's output is the bias only. (default: ``True``)
        unit_init (bool): divide every gated weight by its value at the
            initialization (all logits zero, thresholds at their initial
            :math:`\beta_0`), so that the initial :math:`\tilde A` is the
            candidate graph with unit weights: ``"sym"`` then starts exactly
            at GCN's :math:`D^{-1/2}(A+I)D^{-1/2}`. Without it the product
            :math:`r_{ij} c_{ij}` starts at about
            :math:`\tfrac14 \tfrac{n_i}{n_i+1} \tfrac{n_j}{n_j+1}`, which
            favours high-degree sources, unlike GCN. (default: ``False``)
        candidates (LongTensor, optional): ``[2, E']`` more candidate edges
            beyond the input graph, e.g. the k nearest neighbours of every node
            (:func:`~graphsparse.graph.knn.knn_candidates`): gated like the
            input edges, so the learned graph can add edges as well as remove
            them. Their :attr:`input_id` is ``-1``; :attr:`new_mask` marks them.
        identity_mix (float, optional): the initial :math:`t \in (0, 1)` of a
            learned identity mixing :math:`(1 - t) I + t S` of the normalized
            adjacency :math:`S` (:math:`t = \sigma(\tau)`, one scalar
            :math:`\tau` in the logit parameters). Row and column sums are
            kept, so a doubly stochastic :math:`S` stays doubly stochastic;
            the mass :math:`1 - t` on every node's self-loop gives the leaves
            of a hub, whose only neighbour Sinkhorn's column sums starve,
            their own features back. Needs ``add_self_loops``. (default:
            ``None``, no mixing)
        init_noise (float): standard deviation of Gaussian noise added to the
            initial free logits by :meth:`reset_parameters` (from the global
            torch RNG). A row of equal gates is a saddle point of the p-norm
            penalty (its gradient is the same for every member, and the
            thresholds see a scale-invariant row), so without noise nothing
            decides which member loses first. (default: ``0.0``, the paper)

    Shapes:
        - **input:** ``x`` ``[N, F]`` (with a scorer), optional ``edge_index``
          ``[2, E']`` of another graph (with a scorer)
        - **output:** surviving ``edge_index`` ``[2, E_kept]`` and weights
          ``[E_kept]`` (and their candidate ids ``[E_kept]`` with
          ``return_edge_id=True``)
    """

    # Buffers, parameters and submodules set in __init__, declared for the type
    # checker (nn.Module.__getattr__ is typed ``Tensor | Module``).
    edge_index: Tensor
    beta0_row: Tensor
    beta0_col: Tensor
    pair: Optional[Tensor]
    pair_rep: Optional[Tensor]
    input_weight: Optional[Tensor]
    input_id: Tensor
    input_to_cand: Tensor
    gated_id: Optional[Tensor]
    loop_id: Tensor
    self_loop_id: Tensor
    reverse_id: Optional[Tensor]
    logit_prior: Optional[Tensor]
    sinkhorn_degrees: Optional[Tensor]
    alpha: Optional[nn.Parameter]
    beta_row: Optional[nn.Parameter]
    beta_col: Optional[nn.Parameter]
    scorer: Optional[nn.Module]

    def __init__(self, edge_index: Union[Tensor, Any], num_nodes: Optional[int] = None, *,
                 edge_weight: Optional[Tensor] = None, groups: str = "both",
                 normalization: str = "sinkhorn", num_iters: int = 10,
                 add_self_loops: bool = True, symmetric: bool = False,
                 scorer: Optional[nn.Module] = None, activation: str = "sigmoid",
                 gate_self_loops: bool = True, unit_init: bool = False,
                 init_noise: float = 0.0, candidates: Optional[Tensor] = None,
                 identity_mix: Optional[float] = None, marginals: str = "uniform") -> None:
        super().__init__()
        name = self.__class__.__name__
        check_choice(groups, GROUPS, "groups", name)
        check_choice(normalization, NORMALIZATIONS, "normalization", name)
        check_choice(marginals, MARGINALS, "marginals", name)
        if marginals != "uniform" and normalization not in ("sinkhorn", "balanced"):
            raise ValueError(f"'{name}' with marginals={marginals!r} needs "
                             f"normalization='sinkhorn' or 'balanced' (got {normalization!r}): "
                             f"the marginals are Sinkhorn's target sums")
        check_choice(activation, ACTIVATIONS, "activation", name)
        self.num_iters = check_positive_int(num_iters, "num_iters", name)
        if symmetric and groups != "both":
            raise ValueError(
                f"'{name}' with 'symmetric=True' needs groups='both' (got {groups!r}): "
                f"a row competition alone does not give a symmetric adjacency")
        if scorer is not None and not isinstance(scorer, nn.Module):
            raise ValueError(f"'{name}' expects 'scorer' to be an nn.Module "
                             f"(got {type(scorer).__name__})")
        if (isinstance(init_noise, bool) or not isinstance(init_noise, (int, float))
                or not init_noise >= 0 or init_noise == float("inf")):
            raise ValueError(f"'{name}' expects 'init_noise' to be a finite number >= 0 "
                             f"(got {init_noise!r})")
        if identity_mix is not None and (
                isinstance(identity_mix, bool) or not isinstance(identity_mix, (int, float))
                or not 0.0 < identity_mix < 1.0):
            raise ValueError(f"'{name}' expects 'identity_mix' in (0, 1) or None "
                             f"(got {identity_mix!r})")
        if identity_mix is not None and not add_self_loops:
            raise ValueError(f"'{name}' with 'identity_mix' needs add_self_loops=True: the "
                             f"identity's mass sits on the self-loop candidates")
        edge_index, edge_weight, num_nodes = as_edge_list(edge_index, edge_weight, num_nodes, name)
        self.groups = groups
        self.normalization = normalization
        self.add_self_loops = bool(add_self_loops)
        self.symmetric = bool(symmetric)
        self.activation = activation
        self.gate_self_loops = bool(gate_self_loops)
        self.unit_init = bool(unit_init)
        self.init_noise = float(init_noise)

        cand = build_candidates(edge_index, edge_weight, num_nodes, self.add_self_loops,
                                self.symmetric, self.gate_self_loops, name, extra=candidates)
        self.num_nodes = cand.num_nodes
        self.register_buffer("edge_index", cand.edge_index)
        self.register_buffer("beta0_row", cand.beta0_row, persistent=False)
        self.register_buffer("beta0_col", cand.beta0_col, persistent=False)
        self.register_buffer("pair", cand.pair)
        self.register_buffer("pair_rep", cand.pair_rep)
        self.register_buffer("input_weight", cand.weight)
        self.register_buffer("input_id", cand.input_id)
        self.register_buffer("input_to_cand", cand.input_to_cand)
        self.marginals = marginals
        # Sinkhorn's target sums of the stored candidates ([N], derived)
        self.register_buffer("sinkhorn_degrees",
                             self._degrees(cand) if marginals == "degree" else None,
                             persistent=False)

        self.scorer = scorer
        self._reuse: Optional[Tuple[tuple, _Candidates, Tensor, List[bool]]] = None
        self._last_values: Optional[Tensor] = None
        self._last_batch: Optional[_Candidates] = None
        self._unit: Optional[Tensor] = None
        loop = cand.edge_index[0] == cand.edge_index[1]
        # the gated candidates' ids: only where self-loops stay out of the gates
        # (an [E] index vector, 8 bytes per candidate, not kept when unused)
        self.register_buffer("gated_id", None if self.gate_self_loops
                             else (~loop).nonzero().view(-1), persistent=False)
        self.register_buffer("loop_id", loop.nonzero().view(-1), persistent=False)
        # for mini-batches: the self-loop candidate of every node (-1: none) and,
        # when symmetric, the candidate of the reverse direction of every edge
        self_loop_id = torch.full((self.num_nodes,), -1, dtype=torch.long)
        self_loop_id[cand.edge_index[0, self.loop_id]] = self.loop_id
        self.register_buffer("self_loop_id", self_loop_id, persistent=False)
        self.register_buffer("reverse_id", _reverse_ids(cand.edge_index, self.num_nodes)
                             if self.symmetric else None, persistent=False)
        # An additive, non-learned prior on the logits of the stored candidates
        # (see set_logit_prior); None until one is set (4 bytes per edge saved):
        # the paper's gate.
        self.register_buffer("logit_prior", None)
        beta_shape = (self.num_nodes,) if scorer is None else ()
        if scorer is None:
            n = cand.edge_index.size(1) if cand.pair_rep is None else cand.pair_rep.numel()
            self.alpha = nn.Parameter(torch.empty(n))
        else:
            self.register_parameter("alpha", None)
        use_row, use_col = groups in ("row", "both"), groups in ("col", "both")
        self.beta_row = nn.Parameter(torch.empty(beta_shape)) if use_row else None
        self.beta_col = (nn.Parameter(torch.empty(beta_shape))
                         if use_col and not self.symmetric else None)
        self.identity_mix = None if identity_mix is None else float(identity_mix)
        self.mix_logit = (None if identity_mix is None
                          else nn.Parameter(torch.empty(())))
        self.reset_parameters()

    @classmethod
    def from_data(cls, data, **kwargs) -> "GatedAdjacency":
        """Builds the adjacency from a PyG ``Data``: its ``edge_index`` (or
        ``adj_t``, transposed back), ``num_nodes`` and, if present, its
        one-dimensional ``edge_weight`` as input strengths."""
        edge_index = getattr(data, "edge_index", None)
        if edge_index is None and getattr(data, "adj_t", None) is not None:
            adj_t = data.adj_t
            edge_index = adj_t.t() if hasattr(adj_t, "t") else adj_t
        if edge_index is None:
            raise ValueError(f"'{cls.__name__}.from_data' needs 'data.edge_index' (or 'adj_t')")
        weight = getattr(data, "edge_weight", None)
        if "edge_weight" not in kwargs and isinstance(weight, Tensor) and weight.dim() == 1:
            kwargs["edge_weight"] = weight
        return cls(edge_index, data.num_nodes, **kwargs)

    def reset_parameters(self) -> None:
        with torch.no_grad():
            if self.alpha is not None:
                self.alpha.zero_()
                if self.init_noise > 0:
                    self.alpha.normal_(0.0, self.init_noise)
            for beta, beta0 in ((self.beta_row, self.beta0_row), (self.beta_col, self.beta0_col)):
                if beta is not None:
                    beta.copy_(beta0 if self.scorer is None else beta0.new_zeros(()))
            if self.mix_logit is not None:
                t = torch.tensor(self.identity_mix)
                self.mix_logit.copy_(torch.log(t) - torch.log1p(-t))
        reset = getattr(self.scorer, "reset_parameters", None)   # None without a scorer
        if callable(reset):
            reset()
        self._reuse = None

    def gate_parameters(self) -> Iterator[nn.Parameter]:
        """The gate's own parameters (logits or scorer, thresholds), e.g. for
        an optimizer with its own learning rate."""
        return self.parameters()

    def threshold_parameters(self) -> List[nn.Parameter]:
        r"""The thresholds :math:`\beta` (row and/or column)."""
        return [b for b in (self.beta_row, self.beta_col) if b is not None]

    def logit_parameters(self) -> List[nn.Parameter]:
        """The logits: the free per-edge ``alpha``, or the scorer's parameters."""
        ids = {id(b) for b in self.threshold_parameters()}
        return [q for q in self.parameters() if id(q) not in ids]

    def param_groups(self, lr: float = 1e-3, threshold_lr: Optional[float] = None,
                     weight_decay: float = 0.0) -> List[Dict[str, Any]]:
        r"""Optimizer parameter groups of the gate: the logits at ``lr`` and the
        thresholds at ``threshold_lr`` (default: ``lr``), no weight decay by
        default (it would pull the logits toward 0.5 strength, not toward
        sparsity). The thresholds set the pace of pruning, the logits decide
        which edge of a group loses. Pass them to any optimizer next to the
        model's own groups::

            opt = torch.optim.Adam([{"params": model.parameters(), "lr": 0.01},
                                    *adj.param_groups(lr=1e-3, threshold_lr=0.02)])
        """
        thr = lr if threshold_lr is None else threshold_lr
        for name, value in (("lr", lr), ("threshold_lr", thr), ("weight_decay", weight_decay)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"'{self.__class__.__name__}.param_groups' expects "
                                 f"'{name}' >= 0 (got {value!r})")
        return [dict(params=self.logit_parameters(), lr=lr, weight_decay=weight_decay),
                dict(params=self.threshold_parameters(), lr=thr, weight_decay=0.0)]

    @property
    def num_edges(self) -> int:
        """Number of candidate edges."""
        return self.edge_index.size(1)

    # ------------------------------------------------------------------ core
    def _stored(self) -> _Candidates:
        return _Candidates(self.edge_index, self.num_nodes, self.beta0_row, self.beta0_col,
                           self.pair, self.pair_rep, self.input_weight, self.input_to_cand,
                           self.input_id)

    def _other(self, x: Optional[Tensor], edge_index: Tensor) -> _Candidates:
        name = self.__class__.__name__
        if self.scorer is None:
            raise ValueError(
                f"'{name}' with free gate logits is tied to its candidate edges; "
                f"pass a 'scorer' to apply it to another 'edge_index'")
        if x is None:
            raise ValueError(f"'{name}' needs the node features 'x' with another 'edge_index'")
        edge_index, weight, _ = as_edge_list(edge_index, None, x.size(0), name)
        cand = build_candidates(edge_index.to(x.device), weight, x.size(0), self.add_self_loops,
                                self.symmetric, self.gate_self_loops, name)
        dtype = self.threshold_parameters()[0].dtype
        return cand._replace(beta0_row=cand.beta0_row.to(dtype), beta0_col=cand.beta0_col.to(dtype))

    @torch.no_grad()
    def set_logit_prior(self, prior: Optional[Tensor]) -> None:
        r"""Sets a constant prior :math:`\pi` (``[E]``, aligned with
        :attr:`edge_index`) added to the gate logits of the stored candidates,
        :math:`\alpha_{ij} + \pi_{ij}`; ``None`` removes it. It is a buffer
        (:attr:`logit_prior`, ``None`` until a prior is set: 4 bytes per edge
        only where one is used), not a parameter: no gradient flows into it. The structure
        trainer (:func:`~graphsparse.structure.fit_structure`, ``prior=``)
        sets it from the agreement of the endpoints' predicted class
        distributions, so that an edge whose endpoints disagree loses its row
        and column competitions without any per-edge parameter having to be
        fitted on the few training labels."""
        if prior is None:
            self.logit_prior = None
            return
        shape = (self.edge_index.size(1),)
        if tuple(prior.shape) != shape:
            raise ValueError(f"'{self.__class__.__name__}.set_logit_prior' expects shape "
                             f"{shape} (got {tuple(prior.shape)})")
        check_finite(prior, "prior")
        if self.logit_prior is None:          # allocated on first use, then reused
            self.logit_prior = self.beta0_row.new_empty(shape)
        self.logit_prior.copy_(prior)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # The prior exists only once set: follow the state being loaded.
        # (a state without one, a partial strict=False one included, removes
        # it; a wrong shape is reported as a size mismatch)
        key = prefix + "logit_prior"
        if key in state_dict and self.logit_prior is None:
            self.logit_prior = self.beta0_row.new_empty(self.edge_index.size(1))
        elif key not in state_dict:
            self.logit_prior = None
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def _logits(self, x: Optional[Tensor],
                cand: _Candidates) -> Tuple[Tensor, Optional[Tensor]]:
        """The logits and the logit prior on them (``None``: none applies);
        kept apart so that the fused gate saves the parameter and the buffer
        themselves instead of their sum."""
        logits = self._raw_logits(x, cand)
        if cand.edge_index is self.edge_index:
            return logits, self.logit_prior
        if cand.cand_id is not None:       # a batch of the stored candidates
            prior = self.logit_prior
            return logits, None if prior is None else prior.index_select(0, cand.cand_id)
        return logits, None

    def _raw_logits(self, x: Optional[Tensor], cand: _Candidates) -> Tensor:
        if self.scorer is None:
            assert self.alpha is not None       # free logits exist exactly without a scorer
            idx = self.pair if cand.cand_id is None else (
                cand.cand_id if self.pair is None else self.pair.index_select(0, cand.cand_id))
            return self.alpha if idx is None else self.alpha.index_select(0, idx)
        if x is None:
            raise ValueError(f"'{self.__class__.__name__}' has a scorer: pass the node "
                             f"features 'x'")
        if cand.pair is None:
            return self.scorer(x, cand.edge_index)
        assert cand.pair_rep is not None        # set together with pair
        rep = cand.edge_index.index_select(1, cand.pair_rep)
        return self.scorer(x, rep).index_select(0, cand.pair)

    def _beta(self, beta: Tensor, beta0: Tensor, beta0_stored: Tensor,
              cand: _Candidates) -> Tensor:
        if self.scorer is not None:        # one learned offset from the initial value
            return beta0 + beta
        if cand.node_id is None:
            return beta
        # a batch: the node's learned offset from its full-graph initial value,
        # on the initial value of the batch's (smaller) group
        return beta.index_select(0, cand.node_id) - beta0_stored.index_select(0, cand.node_id) \
            + beta0

    def _values(self, x: Optional[Tensor], cand: _Candidates) -> Tensor:
        if x is not None:
            check_features(x, cand.num_nodes, self.__class__.__name__)
            if self.scorer is not None:
                assert_finite(x, "x")
        alpha, prior = self._logits(x, cand)
        n = cand.num_nodes
        row, col = cand.row, cand.col
        gated = loops = None
        if not self.gate_self_loops:   # precomputed index sets: static shapes, no masking
            gated, loops = self._split_loops(cand)
            alpha, row, col = alpha[gated], row[gated], col[gated]
            prior = None if prior is None else prior[gated]
        weight = self._gate(alpha, prior, row, col, cand, n, init=False)
        if self.unit_init:
            weight = weight / self._unit_scale(alpha, row, col, cand)
        if cand.weight is not None:   # input strengths
            strength = cand.weight.to(weight.dtype)
            weight = weight * (strength if gated is None else strength[gated])
        if gated is not None and loops is not None:   # always-on self-loops: the row's strongest
            top = weight.new_zeros(n).scatter_reduce(0, row, weight, reduce="amax",
                                                     include_self=True)
            top = torch.where(top > 0, top, torch.ones_like(top))
            top = top.index_select(0, cand.row[loops])
            if cand.weight is not None:
                top = top * cand.weight[loops].to(top.dtype)
            full = weight.new_zeros(cand.edge_index.size(1))
            weight = full.index_copy(0, gated, weight).index_copy(0, loops, top)
        weight = _normalize_edges(cand.row, cand.col, weight, n, self.normalization,
                                  self.num_iters, cand.edge_index, self._degrees_of(cand))
        if self.mix_logit is not None:   # (1 - t) I + t S: row and column sums kept
            t = torch.sigmoid(self.mix_logit).to(weight.dtype)
            loops = (self.loop_id if cand.edge_index is self.edge_index   # precomputed
                     else (cand.row == cand.col).nonzero().view(-1))
            weight = (t * weight).index_add(0, loops, (1 - t).expand(loops.numel()))
        return weight

    @staticmethod
    def _degrees(cand: _Candidates) -> Tensor:
        # the row sums of the input strengths, one for an empty row; in
        # float64 (a module's .double() keeps them exact; the kernel casts)
        w = (torch.ones(cand.row.numel(), dtype=torch.float64, device=cand.row.device)
             if cand.weight is None else cand.weight.double())
        d = group_reduce(w, cand.row, cand.num_nodes)
        return torch.where(d > 0, d, torch.ones_like(d))

    def _degrees_of(self, cand: _Candidates) -> Optional[Tensor]:
        """Sinkhorn's target sums for the candidates ``cand`` (None: ones)."""
        if self.marginals == "uniform":
            return None
        if cand.edge_index is self.edge_index and self.sinkhorn_degrees is not None:
            return self.sinkhorn_degrees
        return self._degrees(cand)

    def _split_loops(self, cand: _Candidates) -> Tuple[Tensor, Tensor]:
        """Indices of the non-loop candidates and of the self-loops."""
        if cand.edge_index is self.edge_index and self.gated_id is not None:
            return self.gated_id, self.loop_id
        loop = cand.row == cand.col
        return (~loop).nonzero().view(-1), loop.nonzero().view(-1)

    def _unit_scale(self, alpha: Tensor, row: Tensor, col: Tensor, cand: _Candidates) -> Tensor:
        """The gated weights at the initialization (logits zero, thresholds at
        their initial values): a constant of the candidates, computed once for
        the stored ones."""
        stored = cand.edge_index is self.edge_index
        if stored and self._unit is not None and self._unit.dtype == alpha.dtype \
                and self._unit.device == alpha.device:
            return self._unit
        with torch.no_grad():
            w0 = self._gate(torch.zeros_like(alpha), None, row, col, cand, cand.num_nodes,
                            init=True)
            w0 = w0.clamp_min(torch.finfo(w0.dtype).tiny)
        if stored:
            self._unit = w0
        return w0

    def _apply(self, fn, *args, **kwargs):
        self._unit = None                           # cached on the old device / dtype
        return super()._apply(fn, *args, **kwargs)

    def _gate(self, alpha: Tensor, prior: Optional[Tensor], row: Tensor, col: Tensor,
              cand: _Candidates, n: int, init: bool) -> Tensor:
        """Row and/or column gate outputs (their product) of the softly floored
        logits ``alpha + prior``; ``init``: with the initial thresholds."""
        groups = []
        if self.beta_row is not None:   # row competition (also columns when symmetric)
            beta = (cand.beta0_row if init
                    else self._beta(self.beta_row, cand.beta0_row, self.beta0_row, cand))
            groups.append((beta, row))
        if self.groups != "row":
            if init:
                beta_col = cand.beta0_row if self.symmetric else cand.beta0_col
            else:
                thr = self.beta_row if self.symmetric else self.beta_col
                assert thr is not None      # symmetric: the row thresholds serve the columns
                beta_col = (self._beta(thr, cand.beta0_row, self.beta0_row, cand)
                            if self.symmetric
                            else self._beta(thr, cand.beta0_col, self.beta0_col, cand))
            groups.append((beta_col, col))
        assert groups                       # groups is one of "row", "col", "both"
        if self.activation == "sigmoid":    # fused: autograd keeps the inputs only
            return gate_product(alpha, prior, LOGIT_FLOOR, n, groups)
        z = alpha if prior is None else alpha + prior
        # NaN would read as "pruned" (relu(NaN) comparisons are False): refuse it.
        assert_finite(z, "gate logits (alpha + logit prior, or the scorer's output)")
        z = LOGIT_FLOOR + F.softplus(z - LOGIT_FLOOR)
        weight = None
        for beta, index in groups:
            g = sparse_gate(z, beta, index, n, "none", self.activation, validate=False)
            weight = g if weight is None else weight * g
        assert weight is not None
        return weight

    def _evaluate(self, x: Optional[Tensor],
                  edge_index: Optional[Tensor]) -> Tuple[_Candidates, Tensor]:
        cand = self._stored() if edge_index is None else self._other(x, edge_index)
        return cand, self._values(x, cand)

    # The weights of the last forward pass are reused by the next penalty()
    # on the same inputs, which then costs no second gate and Sinkhorn pass.
    # Reuse requires the very same inputs and parameters (identity and
    # in-place version: an optimizer step or reset_parameters() invalidates
    # it) and an autograd graph that no backward pass has gone through yet.
    def _inputs(self, x: Optional[Tensor], edge_index: Optional[Tensor]) -> tuple:
        if self.scorer is None:     # free logits do not read x
            x = None
        objs = (x, edge_index) + tuple(self.parameters()) + (self.logit_prior,)
        return objs, tuple(None if t is None else t._version for t in objs)

    def _remember(self, x, edge_index, cand: _Candidates, values: Tensor,
                  batch: bool = False) -> None:
        self._reuse = None
        self._last_values = values.detach() if edge_index is None and not batch else None
        self._last_batch = cand if batch else None
        if values.requires_grad:
            spent = [False]
            if not torch.compiler.is_compiling():   # a hook with side effects breaks the graph
                values.register_hook(lambda grad: spent.__setitem__(0, True))
            self._reuse = (self._inputs(x, edge_index), cand, values, spent)

    def _recall(self, x, edge_index) -> Optional[Tuple[_Candidates, Tensor]]:
        reuse, self._reuse = getattr(self, "_reuse", None), None
        if reuse is None or reuse[3][0]:
            return None
        (objs, versions), cand, values, _ = reuse
        now_objs, now_versions = self._inputs(x, edge_index)
        same = len(objs) == len(now_objs) and all(
            a is b for a, b in zip(objs, now_objs, strict=True))
        if torch.compiler.is_compiling():
            # in-place versions are not traceable; inside one compiled step the
            # parameters cannot change between the forward pass and the penalty
            return (cand, values) if same else None
        return (cand, values) if same and versions == now_versions else None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_reuse"] = None        # a live autograd graph cannot be copied
        state["_last_batch"] = None
        return state

    # ------------------------------------------------------------ public API
    def forward(self, x: Optional[Tensor] = None, edge_index: Optional[Tensor] = None, *,
                return_edge_id: bool = False, zeros: str = "drop") -> Tuple[Tensor, ...]:
        """The surviving edges and their normalized weights; every exact zero
        is removed (with the default ``zeros="drop"``). ``edge_index`` (with a
        scorer only) gates the candidates of another graph on the node
        features ``x``.

        With ``return_edge_id=True`` also the candidate id of every surviving
        edge (its column in :attr:`edge_index`, in order); for the stored
        candidates, ``adj.input_id[edge_id]`` is its position in the input
        ``edge_index`` (``-1`` for an added self-loop).

        ``zeros="keep"`` returns every candidate instead, exact zeros
        included, and ``"auto"`` does so while fewer than a quarter of the
        weights are zero (``ZERO_SHARE_TO_DROP``). For message passing the
        result is the same (an exact zero adds exactly nothing, and the gates
        pass no gradient through it), and the candidates' ``edge_index`` is
        returned as it is stored, without a copy, so that the sparse product
        reuses the CSR pattern built for it on the first step instead of
        building one per step. :class:`GatedGCN` uses ``"auto"``. The
        returned ``edge_index`` is then the adjacency's own buffer: do not
        modify it in place.

        With nothing to drop the stored ``edge_index`` itself is returned;
        the surviving edges of the stored candidates come with a CSR pattern
        derived from the stored one (:func:`~graphsparse.graph._ops.select_edges`:
        gathers and prefix sums, no sort), so the sparse products build none.

        The weights of the last call are kept (:attr:`last_edge_values`), so
        that sparsity and the penalty need no second evaluation."""
        check_choice(zeros, ZEROS, "zeros", f"{self.__class__.__name__}.forward")
        stored = edge_index is None
        cand, values = self._evaluate(x, edge_index)
        self._remember(x, edge_index, cand, values)
        keep = values > 0
        if zeros == "auto":      # one count: the host sync that dropping needs anyway
            kept = int(keep.sum())
            zeros = "keep" if kept > (1 - ZERO_SHARE_TO_DROP) * keep.numel() else "drop"
        if zeros == "keep":
            if return_edge_id:
                return (cand.edge_index, values,
                        torch.arange(values.numel(), device=values.device))
            return cand.edge_index, values
        edge_id = keep.nonzero().view(-1)
        if edge_id.numel() == keep.numel():     # nothing to drop: the stored list, no copy
            edge_index = cand.edge_index
        elif stored:     # a subset of a fixed list: its CSR pattern needs no sort
            edge_index = select_edges(cand.edge_index, keep, cand.num_nodes)
        else:
            edge_index = cand.edge_index.index_select(1, edge_id)
        if return_edge_id:
            return edge_index, values.index_select(0, edge_id), edge_id
        return edge_index, values.index_select(0, edge_id)

    def subgraph(self, edge_index: Tensor, e_id: Tensor, n_id: Tensor,
                 x: Optional[Tensor] = None, *,
                 return_edge_id: bool = False) -> Tuple[Tensor, ...]:
        r"""The learned weights on a sampled subgraph (a mini-batch), from the
        global gate parameters, through the batch's edge ids.

        ``edge_index``, ``e_id`` and ``n_id`` are what PyG's loaders give:
        the batch's edges in local node ids, their positions in the input
        ``edge_index`` (``NeighborLoader`` sets ``batch.e_id``; for
        ``RandomNodeLoader`` / ``Data.subgraph`` store
        ``data.e_id = torch.arange(E)`` first), and the global id of every
        local node (``batch.n_id``). The batch's candidates are its distinct
        input edges plus the self-loops of its nodes.

        **Competition groups are per batch**: a node's row competition is
        among its in-coming edges that are in the batch, with the node's own
        learned threshold offset, :math:`eta_i - eta_0(n_i) + eta_0(n_i^b)`
        (:math:`n_i`, :math:`n_i^b`: its group size in the graph and in the
        batch), and the normalization runs on the batch. Full-graph groups
        would need every edge of the graph in every step, which is what
        mini-batches avoid; when a batch holds all in-coming edges of a node
        (a full neighbourhood), that node's weights equal the full-graph ones.
        After this call :meth:`penalty` (without ``edge_index``) is the batch's
        penalty, reusing these weights, until the next full-graph
        :meth:`forward`.

        Args:
            edge_index (LongTensor): ``[2, E_b]`` local edges of the batch.
            e_id (LongTensor): ``[E_b]`` their positions in the input edges.
            n_id (LongTensor): ``[N_b]`` global ids of the batch's nodes.
            x (Tensor, optional): ``[N_b, F]`` the batch's node features
                (with a scorer).
            return_edge_id (bool): also return the candidate ids (global) of
                the surviving edges.

        Returns:
            The surviving local ``edge_index`` ``[2, E_kept]`` and weights
            ``[E_kept]`` (and their candidate ids).
        """
        cand = self._batch(edge_index, e_id, n_id)
        values = self._values(x, cand)
        self._remember(x, None, cand, values, batch=True)
        keep = (values > 0).nonzero().view(-1)
        out = (cand.edge_index.index_select(1, keep), values.index_select(0, keep))
        if return_edge_id:
            assert cand.cand_id is not None
            return out + (cand.cand_id.index_select(0, keep),)
        return out

    def _batch(self, edge_index: Tensor, e_id: Tensor, n_id: Tensor) -> _Candidates:
        name = f"{self.__class__.__name__}.subgraph"
        for arg, t in (("edge_index", edge_index), ("e_id", e_id), ("n_id", n_id)):
            if not isinstance(t, Tensor) or t.dtype not in (torch.long, torch.int32):
                raise ValueError(f"'{name}' expects '{arg}' to be an integer tensor")
        if e_id.dim() != 1 or edge_index.dim() != 2 or edge_index.size(1) != e_id.numel():
            raise ValueError(f"'{name}' expects 'e_id' with one entry per column of "
                             f"'edge_index' (got {tuple(e_id.shape)} and "
                             f"{tuple(edge_index.shape)})")
        n_id, e_id = n_id.long(), e_id.long()
        num_local = n_id.numel()
        local = torch.full((self.num_nodes,), -1, dtype=torch.long, device=n_id.device)
        local[n_id] = torch.arange(num_local, device=n_id.device)
        ids = self.input_to_cand.index_select(0, e_id).long()
        if self.symmetric:                   # both directions of every sampled pair
            assert self.reverse_id is not None
            ids = torch.cat([ids, self.reverse_id.index_select(0, ids)])
        if self.add_self_loops:
            ids = torch.cat([ids, self.self_loop_id.index_select(0, n_id)])
        ids = torch.unique(ids[ids >= 0])     # distinct candidates, in candidate order
        glob = self.edge_index.index_select(1, ids)
        loc = local[glob]
        if bool((loc < 0).any()):
            raise ValueError(f"'{name}': an edge of 'e_id' has an endpoint outside 'n_id' "
                             f"(pass the batch's own e_id and n_id)")
        counted = loc if self.gate_self_loops else loc[:, loc[0] != loc[1]]
        from ..core import init_beta
        dtype = self.beta0_row.dtype
        beta0_row = init_beta(torch.bincount(counted[1], minlength=num_local)).to(dtype)
        beta0_col = init_beta(torch.bincount(counted[0], minlength=num_local)).to(dtype)
        pair = pair_rep = None
        if self.pair is not None:
            _, pair = torch.unique(self.pair.index_select(0, ids), return_inverse=True)
            pair_rep = first_of_each(pair)
        weight = None if self.input_weight is None else self.input_weight.index_select(0, ids)
        return _Candidates(loc, num_local, beta0_row, beta0_col, pair, pair_rep, weight,
                           ids.new_empty(0), self.input_id.index_select(0, ids), ids, n_id)

    @property
    def last_edge_values(self) -> Optional[Tensor]:
        """The detached ``[E]`` weights of the stored candidates from the last
        :meth:`forward` (``None`` before the first one, or after a call on
        another graph)."""
        return self._last_values

    def edge_values(self, x: Optional[Tensor] = None) -> Tensor:
        """Normalized weights ``[E]`` aligned with :attr:`edge_index`, exact
        zeros included (a fresh evaluation)."""
        return self._values(x, self._stored())

    @torch.no_grad()
    def input_values(self, values: Optional[Tensor] = None,
                     edge_id: Optional[Tensor] = None) -> Tensor:
        """Per-edge values moved onto the **input** edges ``[E_in]``, in the order
        the input ``edge_index`` was given (duplicates each get their merged
        candidate's value): the learned weight of every input edge, ``0``
        where it was pruned, so ``adj.input_values() > 0`` is a dense mask of
        the surviving input edges.

        Args:
            values (Tensor, optional): ``[E_cand]`` values aligned with
                :attr:`edge_index`, or ``[E_kept]`` values of the surviving
                edges when ``edge_id`` is given (e.g. an explainer's edge mask
                over the edges the model received). (default: the weights of
                the last forward pass, else a fresh evaluation)
            edge_id (LongTensor, optional): ``[E_kept]`` candidate ids of the
                entries of ``values`` (from ``adj(return_edge_id=True)``).
        """
        if values is None:
            values = self._last_values if self._last_values is not None else self.edge_values()
        if edge_id is not None:
            if values.shape != edge_id.shape:
                raise ValueError(f"'{self.__class__.__name__}.input_values' expects 'values' "
                                 f"aligned with 'edge_id' (got {tuple(values.shape)} and "
                                 f"{tuple(edge_id.shape)})")
            values = values.new_zeros((self.num_edges,) + values.shape[1:]).index_copy_(
                0, edge_id, values)
        if values.size(0) != self.num_edges:
            raise ValueError(f"'{self.__class__.__name__}.input_values' expects 'values' of "
                             f"length {self.num_edges} (the candidates) or 'edge_id' "
                             f"(got length {values.size(0)})")
        return values.index_select(0, self.input_to_cand)

    def penalty(self, p: float = 0.5, x: Optional[Tensor] = None,
                edge_index: Optional[Tensor] = None, *, reduction: str = "sum") -> Tensor:
        r"""The paper's GCN regularizer
        :math:`\sum_i \mathcal{R}(A_{i,:}) + \mathcal{R}(A_{:,i})` with the
        p-norm :math:`\mathcal{R}` (:func:`~graphsparse.core.pnorm_penalty`)
        on the normalized weights (of another graph's ``edge_index`` with a
        scorer).

        ``reduction="sum"`` is the paper's sum over the :math:`N` nodes; with
        ``"mean"`` it is divided by :math:`N`: a per-node average, so that a
        penalty weight :math:`\lambda` means the same on graphs of any size
        (next to a cross-entropy that is itself a mean over nodes).

        Right after a forward pass on the same inputs it reuses that pass's
        weights (no second evaluation), until a backward pass goes through
        them or a parameter changes."""
        check_choice(reduction, REDUCTIONS, "reduction", f"{self.__class__.__name__}.penalty")
        reused = self._recall(x, edge_index)
        batch = getattr(self, "_last_batch", None)
        if reused is not None:
            cand, values = reused
        elif batch is not None and edge_index is None:     # the last mini-batch's graph
            cand, values = batch, self._values(x, batch)
        else:
            cand, values = self._evaluate(x, edge_index)
        # rows and columns in one pass: |a|^p and its slope computed once
        total = ragged_pnorm_penalty(values, (cand.row, cand.col), cand.num_nodes, check_p(p))
        return total / max(cand.num_nodes, 1) if reduction == "mean" else total

    @property
    def new_mask(self) -> Tensor:
        """``[E]`` the candidates that are not input edges (nor self-loops):
        edges the learned graph adds when they survive."""
        new = (self.input_id < 0) & (self.edge_index[0] != self.edge_index[1])
        if self.reverse_id is not None:   # symmetric: the reverse of an input edge is not new
            new = new & new.index_select(0, self.reverse_id)
        return new

    @torch.no_grad()
    def self_share(self, values: Optional[Tensor] = None) -> Tensor:
        r"""``[N]`` the weight of every node's self-loop over its row's total,
        :math:`A_{ii} / \sum_j A_{ij}` (1: the node ignores its neighbours and
        falls back on its own features, as an MLP; 0 for a node without a
        self-loop or an empty row). ``values``: as for :meth:`input_values`."""
        if values is None:
            values = self._last_values if self._last_values is not None else self.edge_values()
        row = self.edge_index[1]
        total = values.new_zeros(self.num_nodes).index_add_(0, row, values)
        own = values.new_zeros(self.num_nodes).index_add_(
            0, row[self.loop_id], values[self.loop_id])
        return torch.where(total > 0, own / total.clamp_min(torch.finfo(total.dtype).tiny),
                           torch.zeros_like(total))

    @property
    def gated_mask(self) -> Tensor:
        """``[E]`` which candidates take part in the competitions: all of them,
        or all but the self-loops with ``gate_self_loops=False`` (those are
        always on and can never be zero)."""
        if self.gate_self_loops:
            return torch.ones_like(self.edge_index[0], dtype=torch.bool)
        return self.edge_index[0] != self.edge_index[1]

    def sparsity_of(self, values: Tensor) -> float:
        """Fraction of the gated candidates (:attr:`gated_mask`) whose weight in
        ``values`` (``[E]``, from :meth:`edge_values`) is exactly zero."""
        values = values[self.gated_mask]
        return float((values == 0).sum()) / max(values.numel(), 1)

    @torch.no_grad()
    def edge_sparsity(self, x: Optional[Tensor] = None) -> float:
        """Fraction of the gated candidate edges (:attr:`gated_mask`) that are
        exactly zero."""
        return self.sparsity_of(self.edge_values(x))

    @torch.no_grad()
    def kept_per_row(self, x: Optional[Tensor] = None) -> Tensor:
        """Number of surviving edges in every row (into every node), ``[N]``."""
        keep = self.edge_values(x) > 0
        return torch.bincount(self.edge_index[1][keep], minlength=self.num_nodes)

    @torch.no_grad()
    def export(self, x: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """The surviving edges and weights, detached."""
        edge_index, weight = self(x)
        return edge_index, weight.detach()

    def to_networkx(self, x: Optional[Tensor] = None):
        """The surviving edges as a ``networkx.DiGraph`` (edge ``j -> i`` with
        ``weight`` :math:`A_{i,j}`), or a ``networkx.Graph`` when
        ``symmetric=True`` (``weight`` the mean of :math:`A_{i,j}` and
        :math:`A_{j,i}`, equal for the ``"sym"``, ``"balanced"`` and ``"none"``
        normalizations)."""
        import networkx as nx
        edge_index, weight = self.export(x)
        graph = nx.Graph() if self.symmetric else nx.DiGraph()
        graph.add_nodes_from(range(self.num_nodes))
        if self.symmetric:    # one edge per pair {i, j}: the mean of both directions
            lo = torch.minimum(edge_index[0], edge_index[1])
            hi = torch.maximum(edge_index[0], edge_index[1])
            key, pair = torch.unique(lo * self.num_nodes + hi, return_inverse=True)
            weight = weight.new_zeros(key.numel()).index_add_(0, pair, weight)
            weight = weight / torch.bincount(pair, minlength=key.numel())
            edge_index = torch.stack([key // self.num_nodes, key % self.num_nodes])
        graph.add_weighted_edges_from(zip(edge_index[0].tolist(), edge_index[1].tolist(),
                                          weight.tolist(), strict=True))
        return graph

    def extra_repr(self) -> str:
        scorer = "free logits" if self.scorer is None else "scorer"
        return (f"num_nodes={self.num_nodes}, num_edges={self.num_edges}, "
                f"groups={self.groups!r}, normalization={self.normalization!r}, "
                f"num_iters={self.num_iters}, "
                + ("" if self.marginals == "uniform" else f"marginals={self.marginals!r}, ")
                + f"symmetric={self.symmetric}, "
                f"gate_self_loops={self.gate_self_loops}, {scorer}")
