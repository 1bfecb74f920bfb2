"""The heterogeneous GNN that ranks missing attribute values, brands and categories.

Graph (a snapshot with the hidden facts removed): node types ``product``, ``value``, ``brand``,
``category``, ``attribute``; every relation is used in both directions (``rev_<rel>``), so a
product hears its visible values, its brand and category, and, two hops away, the other products
that share them; a value hears the products that carry it.

Inputs (all optional but the learnable ones, chosen by :class:`GnnConfig`):

* products: sparse TF-IDF word 1–2-grams of title + description start, through a learned linear map
  (an ``EmbeddingBag``), plus the transformers text embedding (``text.product`` of the feature
  store), plus the PyKEEN embedding (``kge.product``) gated by its mask (a product unseen by the
  KG model has none and gets a learned default instead);
* values, brands, categories: their text embedding (``text.<type>``) and a learnable embedding
  keyed by the node's key (so a later snapshot reuses it: :meth:`GnnCompletionModel.rebind`);
* attributes: a learnable embedding.

Encoder: ``layers`` rounds of relation-aware message passing chosen by name from :data:`CONVS`
(``sage``: ``to_hetero``-style ``HeteroConv`` of ``SAGEConv``; ``gat``: of ``GATConv``; ``hgt``:
``HGTConv``), residual, layer-normalised.

Decoder: for a product ``p`` and an attribute ``a`` (``@brand`` included), the score of candidate
``v`` of ``a`` is ``<MLP(h_p) * r_a, W z_v> + b_v`` over **only** that attribute's candidates
(schema-restricted softmax, cross-entropy with all the attribute's other values as negatives:
type-constrained negatives, exhaustively).

Training (no leakage): each epoch the training pairs are cut at random into *message* pairs, whose
facts are edges of the graph, and *supervision* pairs, whose facts are removed from the graph and
predicted; a share of products lose all their facts in an epoch (cold-start practice: only text,
category and neighbours remain). Early stopping on the validation pairs, scored over a graph
holding the training facts only. Seeds fixed; mini-batches of ``batch_size`` (512) supervision products with the pure-torch neighbour
sampler (``gnn.sampler``) by default; ``batch_size=0`` trains full batch.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .baselines import TOKEN_PATTERN, Baseline, _fact_rows, _fit_pairs, product_text
from .errors import GnnError, MissingExtra
from .metrics import PairScores
from .protocol import SPLITS, FactSplit, _value_attributes, leaf_categories
from .snapshot import NODE_TYPES, Snapshot, load_snapshot

LEARNED_TYPES = ("value", "brand", "category", "attribute")


class ModelError(GnnError):
    """A GNN configuration is invalid, or a model is used on data it cannot score."""


SCORE_BLOCK = 1024  # products per scoring block (see GnnCompletionModel._score_attribute)


def _torch():
    try:
        import torch
        import torch_geometric  # noqa: F401
    except ImportError:
        raise MissingExtra("the GNN needs torch and torch-geometric: pip install 'attrgraph[ml]'") from None
    return torch


@dataclass
class GnnConfig:
    """Everything that defines a GNN run; saved with every checkpoint."""

    conv: str = "sage"  # a name in CONVS
    hidden: int = 128
    layers: int = 1
    dropout: float = 0.2
    # inputs
    tfidf: bool = True
    tfidf_ngrams: tuple[int, int] = (1, 2)
    tfidf_min_df: int = 2
    tfidf_max_features: int = 200_000
    title_char_ngrams: tuple[int, int] | None = (2, 4)  # character n-grams (inside words) of the title beside the
    # word n-grams: a value spelled inside a compound or a misspelt word; None: none
    title_char_min_df: int = 3
    title_char_weight: float = 0.5  # scale of the character block (its rows are L2-normalised, like the TF-IDF rows)
    text_prior: bool = True  # add a cross-fitted TF-IDF classifier's log-probabilities (gnn.prior), weighted per attribute
    prior_top_k: int = 1500  # weights kept per class of the prior's classifiers, at least
    prior_budget: int = 4_000_000  # weights kept per classifier (attribute), shared by its classes
    prior_refit: bool = True  # the prior's classifiers refitted on all training facts score unseen facts (gnn.prior)
    prior_max_classes: int = 200  # an attribute with more values gets a class-centroid prior (cost: facts, not facts x classes)
    select_by_valid: bool = True  # per attribute, the prior alone (or the text head) replaces the model where it ranks
    # the valid pairs better
    text_head: bool = True  # beside the graph head, a decoder head on the product's own inputs only (no messages:
    # the model's text part), trained on the same batches; its loss trains that head only (every other weight
    # it reads is a constant to it), so the graph head learns as without it. select_by_valid picks, per
    # attribute, the graph head, the text head or the prior
    prior_share: float = 0.5  # of max_seconds: no logistic regression of the prior starts later (centroids instead)
    description_chars: int = 300
    mentions: bool = True  # a candidate whose name the product's title names gets mention_w[attribute, 0] added
    # to its score, one its description names mention_w[attribute, 1] (gnn.mentions; weights learned per attribute)
    mention_description_chars: int = 2000  # of the (HTML-stripped) description searched for mentions; 0: title only
    properties: bool = True  # the mapping's product properties as tokens beside the TF-IDF n-grams (gnn.properties)
    property_weight: float = 1.0  # scale of the property block (its rows are L2-normalised, like the TF-IDF rows)
    text_feature: str | None = "text"  # feature-store prefix (text.<type>), None: no text embeddings
    kge_feature: str | None = None  # e.g. "kge" (kge.<type> + kge_mask.<type>); None: none
    learnable: bool = True  # learnable embeddings of values, brands, categories, attributes
    message_passing: bool = True  # False: the same model with no graph (text features only)
    candidate_mp: bool = False  # candidates (values, brands) represented after message passing; False: from
    # their own inputs (name text + learnable embedding) only -- required by mini-batch training
    # training
    epochs: int = 30
    lr: float = 0.01
    weight_decay: float = 0.0
    supervision_share: float = 0.3  # of the training pairs, per epoch: predicted, not in the graph
    product_drop: float = 0.05  # of the products, per epoch: every fact hidden (cold-start practice)
    label_smoothing: float = 0.0
    multi_value_loss: str = "per_value"  # a pair with several true values: "per_value" -- each value is a target
    # of its own (-log p(v) per value, the mean over values; every true value ranked above the false ones,
    # as the protocol's filtered ranks grade it); "mass" -- -log of the summed probability of the true values
    # (one of them on top suffices), averaged over pairs
    loss_pad: int = 32  # attributes with at most this many candidates share one padded (vectorised) loss step;
    # larger ones get a step each (0: every attribute its own step). Same loss, far fewer Python steps
    # on a catalog with thousands of small attributes.
    patience: int = 4  # evaluations without validation improvement before stopping
    eval_every: int = 1
    batch_size: int = 512  # supervision products per mini-batch (neighbour sampling); 0: full batch
    num_neighbors: tuple[int, ...] = (30, 10)
    seed: int = 0
    threads: int = 2
    chunk_rows: int = 100_000  # a catalog of more products builds its sparse text matrix in chunks of this many
    # (kept on disk, memory-mapped: gnn.textmatrix) and runs full-graph scoring in product chunks; 0: never
    max_seconds: float = 240.0  # the whole fit (inputs, prior, epochs) stops after this long, checked between
    # mini-batches (the best state on validation is kept)
    verbose: bool = False

    def __post_init__(self) -> None:
        if self.conv not in CONVS:
            raise ModelError(f"unknown conv {self.conv!r}; valid: {', '.join(CONVS)}")
        if self.multi_value_loss not in ("per_value", "mass"):
            raise ModelError(f"unknown multi_value_loss {self.multi_value_loss!r}; valid: per_value, mass")
        if self.hidden < 4 or self.layers < 0 or not 0 <= self.dropout < 1:
            raise ModelError(f"bad sizes: hidden={self.hidden} (>= 4), layers={self.layers} (>= 0), dropout={self.dropout} ([0, 1))")
        if not 0 < self.supervision_share < 1:
            raise ModelError(f"supervision_share must be in (0, 1), got {self.supervision_share}")
        if not 0 < self.prior_share <= 1 or self.prior_max_classes < 2 or self.max_seconds <= 0:
            raise ModelError(f"prior_share must be in (0, 1] (got {self.prior_share}), prior_max_classes >= 2 "
                             f"(got {self.prior_max_classes}), max_seconds > 0 (got {self.max_seconds})")
        if not 0 <= self.product_drop < 1:
            raise ModelError(f"product_drop must be in [0, 1), got {self.product_drop}")
        if self.epochs < 1 or self.eval_every < 1 or self.patience < 1:
            raise ModelError("epochs, eval_every and patience must be at least 1")
        if self.chunk_rows < 0:
            raise ModelError(f"chunk_rows must be 0 (no chunks) or positive, got {self.chunk_rows}")
        if self.text_prior and not self.tfidf:
            raise ModelError("text_prior needs tfidf=True (the prior reads the same TF-IDF rows)")
        if self.batch_size > 0 and self.candidate_mp:
            raise ModelError("mini-batch training (batch_size > 0) needs candidate_mp=False: a mini-batch does not "
                             "message-pass into every candidate value")
        self.tfidf_ngrams = tuple(self.tfidf_ngrams)  # type: ignore[assignment]
        if self.title_char_ngrams is not None:
            r = tuple(self.title_char_ngrams)
            if len(r) != 2 or not all(isinstance(x, int) for x in r) or not 1 <= r[0] <= r[1]:
                raise ModelError(f"title_char_ngrams must be (lo, hi) with 1 <= lo <= hi, got {self.title_char_ngrams}")
            self.title_char_ngrams = r  # type: ignore[assignment]
        self.num_neighbors = tuple(self.num_neighbors)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GnnConfig":
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(d) - known)
        if bad:
            raise ModelError(f"unknown GNN option(s) {bad}; valid: {', '.join(sorted(known))}")
        return cls(**d)


# -- inputs -----------------------------------------------------------------------------------------------
def _as_input(m: np.ndarray) -> Any:
    """A feature matrix as a tensor without a copy where possible: a read-only memory map (a snapshot loaded
    with ``mmap=True``) is shared, not read into memory (the network never writes its inputs); float16 stays
    float16 (``encode_inputs`` computes in float32)."""
    import warnings

    torch = _torch()
    a = np.asarray(m)
    if a.dtype not in (np.float16, np.float32):
        a = a.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the given NumPy array is not writable"
        return torch.from_numpy(a) if a.flags.c_contiguous else torch.as_tensor(np.ascontiguousarray(a))


def _bag_inputs(X: Any) -> tuple[Any, Any, Any]:
    """(indices, offsets, weights) of the ``EmbeddingBag`` over the rows of csr ``X``: int64 copies of an
    in-memory matrix (as always), zero-copy int32 views of a memory-mapped one (``gnn.textmatrix``)."""
    import warnings

    torch = _torch()
    if isinstance(X.indices, np.memmap) or isinstance(getattr(X.indices, "base", None), np.memmap):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ind = torch.from_numpy(np.asarray(X.indices))
            off = torch.from_numpy(np.ascontiguousarray(X.indptr[:-1], dtype=np.asarray(X.indices).dtype))
            return ind, off, torch.from_numpy(np.asarray(X.data))
    return (torch.as_tensor(X.indices.astype(np.int64)), torch.as_tensor(X.indptr[:-1].astype(np.int64)),
            torch.as_tensor(X.data.astype(np.float32)))


class _Reiterable:
    """An iterable that calls ``make()`` for each pass (rows streamed from a snapshot, twice or more)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make

    def __iter__(self) -> Any:
        return iter(self.make())


# -- the network ------------------------------------------------------------------------------------------
def _fact_hits(scores: np.ndarray, indptr: np.ndarray, local: np.ndarray) -> int:
    """True values ranked first (filtered ranks, as ``gnn.metrics.evaluate`` grades Hits@1): each true
    value above every false candidate of its pair (a tie is not a hit)."""
    from .metrics import filtered_ranks

    return int((filtered_ranks(scores, indptr, local) <= 1.0).sum())


def _relations(edge_types: dict[str, tuple[str, str]]) -> list[tuple[str, str, str]]:
    out = []
    for rel, (s, d) in sorted(edge_types.items()):
        out.append((s, rel, d))
        out.append((d, f"rev_{rel}", s))
    return out


def _make_sage(rels: list[tuple[str, str, str]], hidden: int) -> Any:
    from torch_geometric.nn import HeteroConv, SAGEConv

    return HeteroConv({r: SAGEConv((hidden, hidden), hidden, aggr="mean") for r in rels}, aggr="sum")


def _make_gat(rels: list[tuple[str, str, str]], hidden: int) -> Any:
    from torch_geometric.nn import GATConv, HeteroConv

    return HeteroConv({r: GATConv((hidden, hidden), hidden, heads=1, add_self_loops=False) for r in rels}, aggr="sum")


def _make_hgt(rels: list[tuple[str, str, str]], hidden: int) -> Any:
    from torch_geometric.nn import HGTConv

    return HGTConv(hidden, hidden, (list(NODE_TYPES), rels), heads=4)


CONVS: dict[str, Callable[[list[tuple[str, str, str]], int], Any]] = {"sage": _make_sage, "gat": _make_gat, "hgt": _make_hgt}


def _build_net(cfg: GnnConfig, dims: dict[str, Any], rels: list[tuple[str, str, str]]):
    torch = _torch()
    nn = torch.nn

    class Net(nn.Module):
        """Input projections -> message passing -> per-attribute bilinear decoder.

        ``forward(inputs, edge_index_dict)`` returns ``{type: float [N_type, hidden]}``.
        """

        def __init__(self) -> None:
            super().__init__()
            H = cfg.hidden
            self.proj = nn.ModuleDict()
            for t in NODE_TYPES:
                if dims["text"].get(t):
                    self.proj[f"text_{t}"] = nn.Linear(dims["text"][t], H)
                if dims["kge"].get(t):
                    self.proj[f"kge_{t}"] = nn.Linear(dims["kge"][t], H)
            self.kge_default = nn.ParameterDict({t: nn.Parameter(torch.zeros(H)) for t in NODE_TYPES if dims["kge"].get(t)})
            # sparse gradients: a step touches only the n-grams of its products (SparseAdam)
            self.tfidf = nn.EmbeddingBag(dims["tfidf"], H, mode="sum", sparse=True) if dims["tfidf"] else None
            if self.tfidf is not None:
                nn.init.normal_(self.tfidf.weight, std=0.05)
            self.emb = nn.ModuleDict({t: nn.Embedding(dims["count"][t], H) for t in LEARNED_TYPES if cfg.learnable or t == "attribute"})
            for e in self.emb.values():
                nn.init.normal_(e.weight, std=0.05)
                with torch.no_grad():
                    e.weight[0].zero_()  # row 0: keys first seen after training ("unknown")
            self.bias_in = nn.ParameterDict({t: nn.Parameter(torch.zeros(H)) for t in NODE_TYPES})
            self.norm_in = nn.ModuleDict({t: nn.LayerNorm(H) for t in NODE_TYPES})
            n_layers = cfg.layers if cfg.message_passing else 0
            self.convs = nn.ModuleList([CONVS[cfg.conv](rels, H) for _ in range(n_layers)])
            self.norms = nn.ModuleList([nn.ModuleDict({t: nn.LayerNorm(H) for t in NODE_TYPES}) for _ in range(n_layers)])
            self.drop = nn.Dropout(cfg.dropout)
            self.head = nn.Sequential(nn.Linear(2 * H, H), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(H, H))
            self.head_text = nn.Sequential(nn.Linear(H, H), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(H, H)) \
                if cfg.text_head and n_layers > 0 else None
            self.cand = nn.Linear(H, H)
            self.rel = nn.Embedding(dims["num_attributes"], H)
            nn.init.ones_(self.rel.weight)
            self.scale = nn.Parameter(torch.tensor(math.sqrt(H)))
            self.prior_w = nn.Parameter(torch.ones(dims["num_attributes"])) if cfg.text_prior else None
            self.mention_w = nn.Parameter(torch.ones(dims["num_attributes"], dims["mention_sources"])) \
                if cfg.mentions else None

        def encode_inputs(self, inp: dict[str, Any], types: Sequence[str] = NODE_TYPES) -> dict[str, Any]:
            x = {}
            for t in types:
                h = self.bias_in[t].expand(inp["n"][t], -1)
                if f"text_{t}" in self.proj:  # (stored float16 or float32; .float() is a no-op on float32)
                    h = h + self.proj[f"text_{t}"](inp["text"][t].float())
                if f"kge_{t}" in self.proj:
                    m = inp["kge_mask"][t].float().unsqueeze(1)
                    h = h + m * self.proj[f"kge_{t}"](inp["kge"][t].float()) + (1 - m) * self.kge_default[t]
                if t == "product" and self.tfidf is not None:
                    idx, off, w = inp["tfidf"]
                    h = h + self.tfidf(idx, off, per_sample_weights=w)
                if t in self.emb:
                    h = h + self.emb[t](inp["learn_ids"][t])
                x[t] = self.drop(self.norm_in[t](h))
            return x

        def forward(self, inp: dict[str, Any], edge_index_dict: dict[tuple[str, str, str], Any]) -> dict[str, Any]:
            x = self.encode_inputs(inp)
            x0 = x
            for conv, norms in zip(self.convs, self.norms):
                out = conv(x, edge_index_dict)
                x = {t: norms[t](x[t] + self.drop(torch.relu(out[t]))) if t in out else x[t] for t in x}
            x["product"] = torch.cat([x["product"], x0["product"]], dim=1)
            if not cfg.candidate_mp:
                x["value"], x["brand"] = x0["value"], x0["brand"]
            return x

        def forward_products(self, inp: dict[str, Any], edge_index_dict: dict[tuple[str, str, str], Any],
                             chunk: int) -> dict[str, Any]:
            """:meth:`forward` for one layer of ``HeteroConv`` without candidate message passing (the default
            model), product rows ``chunk`` at a time: only the relations into products are message-passed
            (the other node types' outputs are not read), so no catalog-sized message tensor is built.
            Equal to :meth:`forward` for the rows it returns (``product``, ``value``, ``brand``) within float
            rounding (row blocks of a matrix product)."""
            x0 = self.encode_inputs(inp)
            xp = x0["product"]
            n = xp.shape[0]
            into = {et: e for et, e in edge_index_dict.items() if et[2] == "product"}
            order = {et: torch.argsort(e[1], stable=True) for et, e in into.items()}
            dst = {et: e[1][order[et]] for et, e in into.items()}
            parts = []
            for lo in range(0, n, chunk):
                hi = min(lo + chunk, n)
                sub = {}
                for et, e in into.items():
                    a, b = torch.searchsorted(dst[et], lo), torch.searchsorted(dst[et], hi)
                    sel = order[et][a:b].sort().values  # the chunk's edges in their original order
                    sub[et] = torch.stack([e[0][sel], e[1][sel] - lo])
                xc = {**x0, "product": xp[lo:hi]}
                out = self.convs[0](xc, sub)
                h = xp[lo:hi]
                if "product" in out:
                    h = self.norms[0]["product"](h + self.drop(torch.relu(out["product"])))
                parts.append(h)
            x = dict(x0)
            x["product"] = torch.cat([torch.cat(parts, 0) if parts else xp, xp], dim=1)
            return x

        def query(self, h_products: Any, text: bool = False) -> Any:
            """float [M, H]: the query vectors of M products (rows of ``h_products`` [M, 2H]: after message
            passing, then their own inputs); ``text``: the text head's, from the products' own inputs only
            (detached: its loss does not train what the graph head reads)."""
            if text:
                return self.head_text(h_products[:, h_products.shape[1] // 2:].detach())
            return self.head(h_products)

        def logits(self, q: Any, attribute: int, k: Any, cand_bias: Any, detach: bool = False) -> Any:
            """float [M, C]: scores of M queries over C candidate vectors ``k`` [C, H] of ``attribute``
            (``detach``: the decoder's weights as constants, for the text head's loss)."""
            rel, scale = self.rel.weight[attribute], self.scale
            if detach:
                rel, scale, k, cand_bias = rel.detach(), scale.detach(), k.detach(), cand_bias.detach()
            return ((q * rel) @ k.T) * (scale / q.shape[1]) + cand_bias

    return Net()


class _Optimizers:
    """Adam for the dense parameters and SparseAdam for the sparse TF-IDF table, stepped together."""

    def __init__(self, *opts: Any) -> None:
        self.opts = [o for o in opts if o is not None]

    def zero_grad(self) -> None:
        for o in self.opts:
            o.zero_grad(set_to_none=True)

    def step(self) -> None:
        for o in self.opts:
            o.step()


# -- the model ------------------------------------------------------------------------------------------
class GnnCompletionModel(Baseline):
    """Fit on a snapshot and a :class:`FactSplit`; score any (product, attribute) over its candidates.

    ``fit(snap, split, on=("train",))`` trains on the facts of ``on`` and early-stops on the
    ``valid`` pairs. ``_score_attribute(a, products)`` gives probabilities [M, C_a]; the graph it
    message-passes over holds the visible facts (train + valid) except those of the pairs being
    scored by :meth:`score` (scoring valid pairs uses the train facts only).
    """

    name = "gnn"

    def __init__(self, config: GnnConfig | None = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise ModelError("give either config= or keyword options, not both")
        self.cfg = config if config is not None else GnnConfig.from_dict(kwargs)
        self.split: FactSplit | None = None
        self.history: list[dict[str, Any]] = []
        self.fit_seconds = 0.0
        self.best_epoch = -1
        self._runtime: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        d = asdict(self.cfg)
        d["name"] = self.name
        return d

    # -- data -------------------------------------------------------------------------------------
    def _prepare(self, snap: Snapshot, split: FactSplit, *, fit_vectorizer: bool) -> None:
        """Tensors of ``snap``: inputs, candidate tables, fact edges by pair. Keeps ``snap`` bound."""
        torch = _torch()
        cfg = self.cfg
        self.snap, self.split = snap, split
        rt: dict[str, Any] = {}
        n = {t: snap.num_nodes(t) for t in NODE_TYPES}
        inp: dict[str, Any] = {"n": n, "text": {}, "kge": {}, "kge_mask": {}, "learn_ids": {}}
        names = set(snap.features.names())
        dims: dict[str, Any] = {"text": {}, "kge": {}, "count": {}, "tfidf": 0, "num_attributes": split.num_attributes}
        versions: dict[str, Any] = {}
        for t in NODE_TYPES:
            if cfg.text_feature:
                f = f"{cfg.text_feature}.{t}"
                if f not in names:
                    raise ModelError(f"{snap.path}: no feature {f!r} in the feature store (have: {', '.join(sorted(names)) or 'none'}); "
                                     f"compute it with `attrgraph features`, or set text_feature=None")
                m = snap.features.get(f)
                inp["text"][t] = _as_input(m)
                dims["text"][t] = m.shape[1]
                meta = snap.features.meta(f)
                versions[f] = {k: meta.get(k) for k in ("encoder", "version", "snapshot")}
            if cfg.kge_feature and t in ("product", "value", "brand", "category"):
                f, fm = f"{cfg.kge_feature}.{t}", f"{cfg.kge_feature}_mask.{t}"
                if f not in names or fm not in names:
                    raise ModelError(f"{snap.path}: no feature {f!r}/{fm!r}; compute KG embeddings with `attrgraph features`, or set kge_feature=None")
                m = snap.features.get(f)
                inp["kge"][t] = _as_input(m)
                inp["kge_mask"][t] = _as_input(snap.features.get(fm))
                dims["kge"][t] = m.shape[1]
                versions[f] = {k: snap.features.meta(f).get(k) for k in ("model", "snapshot")}
        # learnable embeddings keyed by node key: rows kept across snapshots (rebind)
        if not hasattr(self, "key_tables"):
            self.key_tables = {t: {} for t in LEARNED_TYPES}
        for t in LEARNED_TYPES:
            table = self.key_tables[t]
            keys = snap.keys(t)
            ids = np.empty(len(keys), np.int64)
            for i, k in enumerate(keys):
                if k not in table:
                    # a key first seen after training maps to row 0 of the table (learned "unknown")
                    table[k] = len(table) + 1 if fit_vectorizer else 0
                ids[i] = table[k]
            inp["learn_ids"][t] = torch.as_tensor(ids)
            dims["count"][t] = len(table) + 1
        if cfg.tfidf:
            if self._chunked(snap):
                X = self._text_matrix_chunked(snap, fit_vectorizer, versions)
            else:
                X = self._text_matrix(snap, fit_vectorizer, versions)
            rt["tfidf_csr"] = X
            inp["tfidf"] = _bag_inputs(X)
            dims["tfidf"] = X.shape[1]
        rt["inp"], rt["dims"] = inp, dims
        if cfg.mentions:
            from .baselines import description_text
            from .mentions import candidate_forms, mention_matrix

            from .textmatrix import build_csr, chunks

            forms = candidate_forms(snap, split)
            prods = snap.nodes["product"]
            step = cfg.chunk_rows if self._chunked(snap) else len(prods) or 1  # (row blocks: the same matrix)
            rt["mention"] = [build_csr((mention_matrix([str(r.get("title") or "") for r in part], forms)
                                        for part in chunks(prods, step)), rows=len(prods), in_memory_below=2**62)]
            if cfg.mention_description_chars > 0:
                rt["mention"].append(build_csr(
                    (mention_matrix([description_text(r, cfg.mention_description_chars) for r in part], forms)
                     for part in chunks(prods, step)), rows=len(prods), in_memory_below=2**62))
            dims["mention_sources"] = len(rt["mention"])
        if cfg.text_prior:
            from .prior import key_folds

            rt["folds"] = key_folds(snap.keys("product"))
        self.feature_versions = versions
        # fact edges of every pair (value or brand edges), for building graphs per epoch
        v_attr = _value_attributes(snap)
        rt["v_attr"] = v_attr
        rt["pair_of_fact"], rt["fact_value"] = _fact_rows(split, np.arange(split.num_pairs))
        # brand facts are pairs (hidden or shown per split) only when the split includes them
        pair_rels = ("has_value", "has_brand") if split.config.get("include_brand", True) else ("has_value",)
        rt["static"] = {rel: e for rel, e in snap.edges.items() if rel not in pair_rels}
        rt["rels"] = _relations(snap.edge_types)
        self._runtime = rt

    def _text_matrix(self, snap: Snapshot, fit_vectorizer: bool, versions: dict[str, Any]) -> Any:
        """csr float32 [N, V]: TF-IDF word n-grams, title character n-grams and property tokens, all at once."""
        cfg = self.cfg
        texts = [product_text(r, cfg.description_chars) for r in snap.nodes["product"]]
        import scipy.sparse as sps
        from sklearn.feature_extraction.text import TfidfVectorizer

        if fit_vectorizer:
            self.vectorizer = TfidfVectorizer(ngram_range=cfg.tfidf_ngrams, min_df=cfg.tfidf_min_df, sublinear_tf=True,
                                              token_pattern=TOKEN_PATTERN,
                                              max_features=cfg.tfidf_max_features, dtype=np.float32)
            X = self.vectorizer.fit_transform(texts).tocsr()
        else:
            X = self.vectorizer.transform(texts).tocsr()
        # (a checkpoint from before title character n-grams has no char_vectorizer: its columns stay as trained)
        if cfg.title_char_ngrams and (fit_vectorizer or getattr(self, "char_vectorizer", None) is not None):
            titles = [str(r.get("title") or "") for r in snap.nodes["product"]]
            Xc = None
            if fit_vectorizer:
                self.char_vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=cfg.title_char_ngrams,
                                                       min_df=cfg.title_char_min_df, sublinear_tf=True, dtype=np.float32)
                try:
                    Xc = self.char_vectorizer.fit_transform(titles)
                except ValueError:  # no n-gram in min_df titles (a tiny or title-less catalog): no block
                    self.char_vectorizer = None
            else:
                Xc = self.char_vectorizer.transform(titles)
            if Xc is not None:
                X = sps.hstack([X, Xc * np.float32(cfg.title_char_weight)], format="csr", dtype=np.float32)
        elif fit_vectorizer:
            self.char_vectorizer = None
        if cfg.properties and (fit_vectorizer or getattr(self, "property_tokens", None) is not None):
            from .properties import PropertyTokens

            props = [r.get("props") for r in snap.nodes["product"]]
            if fit_vectorizer:
                self.property_tokens = PropertyTokens().fit(props)
            X = self.property_tokens.append_to(X, props, cfg.property_weight)
            versions["properties"] = {"version": self.property_tokens.version, "tokens": len(self.property_tokens)}
        elif fit_vectorizer:
            self.property_tokens = None
        return X

    def _chunked(self, snap: Snapshot) -> bool:
        return 0 < self.cfg.chunk_rows < snap.num_nodes("product")

    def _text_matrix_chunked(self, snap: Snapshot, fit_vectorizer: bool, versions: dict[str, Any]) -> Any:
        """:meth:`_text_matrix` built ``chunk_rows`` products at a time (``gnn.textmatrix``) and kept on disk,
        memory-mapped: the same vectorisers and the same matrix, entry for entry and in the same order."""
        import scipy.sparse as sps
        from sklearn.feature_extraction.text import TfidfVectorizer

        from .textmatrix import build_csr, chunks, fit_tfidf

        cfg = self.cfg
        prods = snap.nodes["product"]
        step = cfg.chunk_rows

        def texts():
            return (product_text(r, cfg.description_chars) for r in prods)

        def titles():
            return (str(r.get("title") or "") for r in prods)

        if fit_vectorizer:
            self.vectorizer, words = fit_tfidf(
                TfidfVectorizer(ngram_range=cfg.tfidf_ngrams, min_df=cfg.tfidf_min_df, sublinear_tf=True,
                                token_pattern=TOKEN_PATTERN, max_features=cfg.tfidf_max_features, dtype=np.float32),
                texts, chunk=step)
        else:
            words = (self.vectorizer.transform(part) for part in chunks(texts(), step))
        chars = None
        # (a checkpoint from before title character n-grams has no char_vectorizer: its columns stay as trained)
        if cfg.title_char_ngrams and (fit_vectorizer or getattr(self, "char_vectorizer", None) is not None):
            if fit_vectorizer:
                try:
                    self.char_vectorizer, chars = fit_tfidf(
                        TfidfVectorizer(analyzer="char_wb", ngram_range=cfg.title_char_ngrams,
                                        min_df=cfg.title_char_min_df, sublinear_tf=True, dtype=np.float32),
                        titles, chunk=step)
                except ValueError:  # no n-gram in min_df titles (a tiny or title-less catalog): no block
                    self.char_vectorizer = None
            else:
                chars = (self.char_vectorizer.transform(part) for part in chunks(titles(), step))
        elif fit_vectorizer:
            self.char_vectorizer = None
        use_props = cfg.properties and (fit_vectorizer or getattr(self, "property_tokens", None) is not None)
        if use_props:
            from .properties import PropertyTokens

            if fit_vectorizer:
                self.property_tokens = PropertyTokens().fit(_Reiterable(lambda: (r.get("props") for r in prods)))
            versions["properties"] = {"version": self.property_tokens.version, "tokens": len(self.property_tokens)}
        elif fit_vectorizer:
            self.property_tokens = None

        def blocks():
            props = chunks((r.get("props") for r in prods), step) if use_props else None
            for X in words:
                X = X.tocsr()
                if chars is not None:
                    X = sps.hstack([X, next(chars) * np.float32(cfg.title_char_weight)], format="csr", dtype=np.float32)
                if props is not None:
                    X = self.property_tokens.append_to(X, next(props), cfg.property_weight)
                yield X

        return build_csr(blocks(), rows=len(prods), in_memory_below=0)

    def _full_forward(self, graph: dict[tuple[str, str, str], Any]) -> dict[str, Any]:
        """The network over the whole graph (evaluation and scoring): in product chunks (``chunk_rows``) when
        the catalog is larger than that and the model is the one-layer ``HeteroConv`` without candidate
        message passing; else :meth:`Net.forward` at once."""
        cfg = self.cfg
        if self._chunked(self.snap) and cfg.layers == 1 and cfg.message_passing and not cfg.candidate_mp \
                and cfg.conv in ("sage", "gat"):
            return self.net.forward_products(self._runtime["inp"], graph, cfg.chunk_rows)
        return self.net(self._runtime["inp"], graph)

    def _graph(self, fact_mask: np.ndarray) -> dict[tuple[str, str, str], Any]:
        """The edge_index dict with the facts of pairs where ``fact_mask`` [F] is True."""
        torch = _torch()
        rt = self._runtime
        sp = self.split
        pf, fv = rt["pair_of_fact"][fact_mask], rt["fact_value"][fact_mask]
        is_brand = sp.attribute[pf] == sp.brand_attribute
        edges = dict(rt["static"])
        edges["has_value"] = np.stack([sp.product[pf[~is_brand]], fv[~is_brand]])
        if "has_brand" not in edges:
            edges["has_brand"] = np.stack([sp.product[pf[is_brand]], fv[is_brand]])
        out = {}
        for s, rel, d in rt["rels"]:
            base = rel[4:] if rel.startswith("rev_") else rel
            e = edges.get(base)
            if e is None:
                e = np.zeros((2, 0), np.int64)
            # a copy: np.ascontiguousarray keeps the negative stride of an empty reversed array (no brands)
            e = torch.as_tensor(np.array(e[::-1] if rel.startswith("rev_") else e, dtype=np.int64, order="C"), dtype=torch.long)
            out[(s, rel, d)] = e
        return out

    def _cand_bias(self, attribute: int) -> Any:
        return self.cand_bias[self._cand_offset[attribute]: self._cand_offset[attribute + 1]]

    # -- training ---------------------------------------------------------------------------------
    def fit(self, snap: Snapshot, split: FactSplit, *, on: Sequence[str] = ("train",), dist: Any = None
            ) -> "GnnCompletionModel":
        """Train on the facts of ``on``, early-stopping on the ``valid`` pairs. ``dist``: a
        ``gnn.distributed.DistContext`` -- this process is one rank of a data-parallel run
        (``gnn.distributed.fit_gnn``); None: one process, as always."""
        if dist is not None:
            from .distributed import fit_gnn

            return fit_gnn(self, snap, split, on=on, ctx=dist)
        torch = _torch()
        cfg = self.cfg
        t_start = time.perf_counter()
        prev_threads = torch.get_num_threads()
        torch.set_num_threads(max(1, cfg.threads))
        try:
            torch.manual_seed(cfg.seed)
            rng = np.random.default_rng(cfg.seed)
            self._prepare(snap, split, fit_vectorizer=True)
            rt = self._runtime
            self.net = _build_net(cfg, rt["dims"], rt["rels"])
            self._net_rels = list(rt["rels"])
            if cfg.text_prior:
                from .prior import TextPrior

                t_prior = time.perf_counter()
                self.prior = TextPrior(top_k=cfg.prior_top_k, budget=cfg.prior_budget, n_jobs=max(1, cfg.threads),
                                       seed=cfg.seed, refit=cfg.prior_refit, max_lr_classes=cfg.prior_max_classes).fit(
                    rt["tfidf_csr"], split, _fit_pairs(split, on), rt["folds"],
                    deadline=t_start + cfg.prior_share * cfg.max_seconds)
                self.prior_seconds = time.perf_counter() - t_prior
                if cfg.verbose:
                    print({"text_prior_seconds": round(self.prior_seconds, 1)}, flush=True)
            sizes = np.array([split.num_candidates(a) for a in range(split.num_attributes)])
            self._cand_offset = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            self.cand_bias = torch.nn.Parameter(torch.zeros(int(self._cand_offset[-1])))
            sparse = [self.net.tfidf.weight] if self.net.tfidf is not None else []
            params = [p for p in self.net.parameters() if all(p is not q for q in sparse)] + [self.cand_bias]
            opt = _Optimizers(torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
                              torch.optim.SparseAdam(sparse, lr=cfg.lr) if sparse else None)
            fit_pairs = _fit_pairs(split, on)
            if self.net.mention_w is not None:
                with torch.no_grad():
                    self.net.mention_w.copy_(torch.as_tensor(self._mention_log_odds(fit_pairs)))
            rt["prior_pad_pairs"] = np.zeros(split.num_pairs, bool)
            rt["prior_pad_pairs"][fit_pairs] = True
            rt.pop("prior_pad", None)
            pof = rt["pair_of_fact"]
            in_fit = np.zeros(split.num_pairs, bool)
            in_fit[fit_pairs] = True
            valid = split.pairs("valid")
            valid_graph = self._graph(in_fit[pof])  # the training facts only
            best, best_state, bad, ep = -1.0, None, 0, 0
            self.history = []
            products_with_fit = np.unique(split.product[fit_pairs])
            deadline = t_start + cfg.max_seconds
            eval_s = 0.02 * cfg.max_seconds  # reserved for the validation pass after the last batch (then measured)
            self.stopped_by_time = False
            for ep in range(cfg.epochs):
                self.net.train()
                sup = np.zeros(split.num_pairs, bool)
                sup[fit_pairs[rng.random(len(fit_pairs)) < cfg.supervision_share]] = True
                if cfg.product_drop > 0:
                    dropped = products_with_fit[rng.random(len(products_with_fit)) < cfg.product_drop]
                    sup |= in_fit & np.isin(split.product, dropped)
                msg = in_fit & ~sup
                g = self._graph(msg[pof])
                if cfg.batch_size > 0:
                    loss_value, done = self._minibatch_epoch(g, np.flatnonzero(sup), opt, params, rng,
                                                             stop_at=deadline - eval_s, min_batches=0 if ep else 1)
                    self.stopped_by_time = done < 1.0
                else:
                    opt.zero_grad()
                    x = self.net(rt["inp"], g)
                    loss = self._loss(x, np.flatnonzero(sup))
                    if self.net.head_text is not None:
                        loss = loss + self._loss(x, np.flatnonzero(sup), text=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 5.0)
                    opt.step()
                    loss_value = float(loss.detach())
                rec = {"epoch": ep, "loss": loss_value, "seconds": round(time.perf_counter() - t_start, 1)}
                if self.stopped_by_time:
                    rec["partial"] = True  # the time budget ended this epoch between two mini-batches
                # the budget ends training after this epoch (between batches, or with no room for another):
                # evaluate it, so that the last weights trained are considered too
                out_of_time = self.stopped_by_time or time.perf_counter() > deadline - eval_s
                if len(valid) and (ep % cfg.eval_every == cfg.eval_every - 1 or ep == cfg.epochs - 1 or out_of_time):
                    t_eval = time.perf_counter()
                    acc = self._valid_accuracy(valid, valid_graph)
                    eval_s = time.perf_counter() - t_eval
                    rec["valid_hits@1"] = acc
                    if acc > best + 1e-5:
                        best, bad, self.best_epoch = acc, 0, ep
                        best_state = ({k: v.detach().clone() for k, v in self.net.state_dict().items()},
                                      self.cand_bias.detach().clone())
                    else:
                        bad += 1
                self.history.append(rec)
                if cfg.verbose:
                    print(rec, flush=True)
                out_of_time = out_of_time or time.perf_counter() > deadline - eval_s  # (the evaluation took time too)
                if bad >= cfg.patience or out_of_time:
                    self.stopped_by_time = out_of_time and bad < cfg.patience
                    break
            if best_state is not None:
                self.net.load_state_dict(best_state[0])
                with torch.no_grad():
                    self.cand_bias.copy_(best_state[1])
            self.epochs_run = ep + 1
            self.net.eval()
            self._cache: dict[Any, Any] = {}
            self.prior_only: set[int] = set()
            self.text_only: set[int] = set()
            self.selection: dict[str, Any] = {}
            if cfg.text_prior and cfg.select_by_valid and len(valid):
                self._select_by_valid(valid, valid_graph)
        finally:
            torch.set_num_threads(prev_threads)
        self.fit_seconds = time.perf_counter() - t_start
        return self

    def _loss(self, x: dict[str, Any], pairs: np.ndarray, product_pos: np.ndarray | None = None, K: Any = None,
              text: bool = False) -> Any:
        """-log p(true value), averaged over the true values of ``pairs`` (``multi_value_loss="per_value"``),
        or -log(probability mass on a pair's true values) averaged over pairs (``"mass"``).

        Products, their query vectors and the candidates are gathered once (one index op each:
        per-attribute gathers would each allocate a full-size gradient in the backward pass).
        Pairs of attributes with at most ``loss_pad`` candidates are scored together over padded
        candidate lists (:meth:`_padded_loss`); the others one attribute at a time."""
        torch = _torch()
        sp = self.split
        pairs = pairs[np.argsort(sp.attribute[pairs], kind="stable")]
        n_cand = np.diff(sp.cand_indptr)
        pairs = pairs[n_cand[sp.attribute[pairs]] >= 2] if len(pairs) else pairs
        if len(pairs) == 0:
            return x["product"].new_zeros((), requires_grad=True)
        per_value = self.cfg.multi_value_loss == "per_value"
        n_all = int((sp.indptr[pairs + 1] - sp.indptr[pairs]).sum()) if per_value else len(pairs)
        prows_all = sp.product[pairs] if product_pos is None else product_pos[sp.product[pairs]]
        K = self._all_candidates(x) if K is None else K
        if text:  # the text head reads the candidates' inputs but does not train them
            K = K.detach()
        total = x["product"].new_zeros(())
        pad = int(self.cfg.loss_pad)
        small = n_cand[sp.attribute[pairs]] <= pad if pad >= 2 else np.zeros(n_all, bool)
        if small.all():
            return self._padded_loss(x["product"], prows_all, pairs, K, pad, text) / n_all
        if small.any():
            prows_all = prows_all[~small]
            total = self._padded_loss(x["product"], sp.product[pairs[small]] if product_pos is None
                                      else product_pos[sp.product[pairs[small]]], pairs[small], K, pad, text)
            pairs = pairs[~small]
        q = self.net.query(x["product"][torch.as_tensor(prows_all)], text)
        attrs = sp.attribute[pairs]
        bounds = np.flatnonzero(np.concatenate([[True], attrs[1:] != attrs[:-1], [True]]))
        # torch.split, not slicing: a slice's backward allocates a full-size gradient per slice
        q_parts = torch.split(q, np.diff(bounds).tolist())
        K_parts = torch.split(K, np.diff(sp.cand_indptr).tolist())
        b_parts = torch.split(self.cand_bias, np.diff(self._cand_offset).tolist())
        for i, (lo, hi) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist())):
            a = int(attrs[lo])
            ip, tl = sp.truth(pairs[lo:hi])
            logits = self.net.logits(q_parts[i], a, K_parts[a], b_parts[a], detach=text) + self._side_scores(
                a, sp.product[pairs[lo:hi]], training=True, detach=text)
            logp = torch.log_softmax(logits, dim=1)
            rows = np.repeat(np.arange(hi - lo), np.diff(ip))
            mass = self._true_logp(logp, rows, tl, hi - lo, per_value)
            if self.cfg.label_smoothing > 0:
                mean_logp = logp.mean(1)
                mass = (1 - self.cfg.label_smoothing) * mass + self.cfg.label_smoothing * (
                    mean_logp[torch.as_tensor(rows)] if per_value else mean_logp)
            total = total - mass.sum()
        return total / n_all

    def _padded_loss(self, h_products: Any, prows: np.ndarray, pairs: np.ndarray, K: Any, pad: int,
                     text: bool = False) -> Any:
        """Summed -log p(true value) (or -log(true mass), per ``multi_value_loss``) of ``pairs`` (training
        pairs of attributes with 2..``pad`` candidates), all at once: each pair's candidates padded to
        ``pad`` (the padding masked out of the softmax).
        Equal to the per-attribute loss of :meth:`_loss` (tests/test_gnn_model.py checks it)."""
        torch = _torch()
        sp = self.split
        attrs = sp.attribute[pairs]
        q = self.net.query(h_products[torch.as_tensor(prows)], text)  # [n, H]
        n_c = np.diff(sp.cand_indptr)[attrs]
        col = np.arange(pad)
        valid = col[None, :] < n_c[:, None]  # [n, pad]
        cidx = np.where(valid, sp.cand_indptr[attrs][:, None] + col[None, :], 0)
        bidx = np.where(valid, self._cand_offset[attrs][:, None] + col[None, :], 0)
        a_t, c_t = torch.as_tensor(attrs), torch.as_tensor(cidx)
        def w(t: Any) -> Any:  # the text head's loss trains the text head only: the decoder's weights as constants
            return t.detach() if text else t

        qa = q * w(self.net.rel.weight)[a_t]
        logits = torch.einsum("nh,nch->nc", qa, w(K)[c_t]) * (w(self.net.scale) / q.shape[1]) + \
            w(self.cand_bias)[torch.as_tensor(bidx)]
        prior_t, mention_t = self._padded_side(pairs, pad)
        if self.net.prior_w is not None:
            logits = logits + w(self.net.prior_w)[a_t].unsqueeze(1) * torch.as_tensor(prior_t)
        if self.net.mention_w is not None:
            logits = logits + (torch.as_tensor(mention_t) * w(self.net.mention_w)[a_t].unsqueeze(1)).sum(-1)
        vmask = torch.as_tensor(valid)
        logits = logits.masked_fill(~vmask, float("-inf"))
        logp = torch.log_softmax(logits, dim=1)
        # the true values as (row, column) of the padded block
        counts = sp.indptr[pairs + 1] - sp.indptr[pairs]
        rows = np.repeat(np.arange(len(pairs)), counts)
        idx = np.repeat(sp.indptr[pairs] - np.concatenate([[0], np.cumsum(counts)[:-1]]), counts) + np.arange(counts.sum())
        tl = sp.values[idx].copy()  # brand candidates are brand ids already (FactSplit.local)
        not_brand = np.repeat(attrs != sp.brand_attribute, counts)
        tl[not_brand] = sp.value_local[tl[not_brand]]
        per_value = self.cfg.multi_value_loss == "per_value"
        mass = self._true_logp(logp, rows, tl, len(pairs), per_value)
        if self.cfg.label_smoothing > 0:
            mean_logp = logp.masked_fill(~vmask, 0.0).sum(1) / torch.as_tensor(n_c, dtype=logp.dtype)
            mass = (1 - self.cfg.label_smoothing) * mass + self.cfg.label_smoothing * (
                mean_logp[torch.as_tensor(rows)] if per_value else mean_logp)
        return -mass.sum()

    @staticmethod
    def _true_logp(logp: Any, rows: np.ndarray, tl: np.ndarray, n_pairs: int, per_value: bool) -> Any:
        """The log-probabilities the loss maximises: one per true value (``per_value``), or per pair the
        log of its true values' summed probability."""
        torch = _torch()
        lp = logp[torch.as_tensor(rows), torch.as_tensor(tl)]
        if per_value or len(rows) == n_pairs:  # (one true value per pair: both are the same)
            return lp
        return torch.zeros(n_pairs).index_add(0, torch.as_tensor(rows), lp.exp()).clamp_min(1e-30).log()

    def _padded_side(self, pairs: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
        """float32 [n, pad] and [n, pad, S]: the out-of-fold prior log-probabilities and the mention
        indicators (per source) of training ``pairs`` (padding 0), computed once per fit for every training
        pair of a small attribute."""
        rt = self._runtime
        if "prior_pad" not in rt:
            sp = self.split
            fit = np.flatnonzero(rt["prior_pad_pairs"])
            attrs = sp.attribute[fit]
            fit = fit[(np.diff(sp.cand_indptr)[attrs] <= pad) & (np.diff(sp.cand_indptr)[attrs] >= 2)]
            attrs = sp.attribute[fit]
            table = np.zeros((len(fit), pad), np.float32)
            mtable = np.zeros((len(fit), pad, len(rt.get("mention", ()))), np.float32)
            row = np.full(sp.num_pairs, -1, np.int64)
            row[fit] = np.arange(len(fit))
            order = np.argsort(attrs, kind="stable")
            bounds = np.flatnonzero(np.concatenate([[True], attrs[order][1:] != attrs[order][:-1], [True]]))
            for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
                sel = order[lo:hi]
                a = int(attrs[sel[0]])
                if self.net.prior_w is not None:
                    lp = self._prior(a, sp.product[fit[sel]], training=True).numpy()
                    table[sel, : lp.shape[1]] = lp
                if self.net.mention_w is not None:
                    mm = self._mention(a, sp.product[fit[sel]]).numpy()
                    mtable[sel, : mm.shape[1], :] = mm
            rt["prior_pad"], rt["mention_pad"], rt["prior_pad_row"] = table, mtable, row
        r = rt["prior_pad_row"][pairs]
        if (r < 0).any():
            raise ModelError("gnn: padded inputs requested for a pair outside the training pairs")
        return rt["prior_pad"][r], rt["mention_pad"][r]

    def _mention_log_odds(self, pairs: np.ndarray, max_abs: float = 10.0) -> np.ndarray:
        """float32 [A, S]: per attribute and source, log(P(true | mentioned) / P(true | not mentioned)) over the
        candidates of the training ``pairs`` (add-1/2 smoothed, clipped to +-``max_abs``): the starting
        weight of a mention, so that a catalog whose values are spans of its titles reads them from the
        first step (training then adjusts it)."""
        sp, sources = self.split, self._runtime["mention"]
        out = np.zeros((sp.num_attributes, len(sources)), np.float32)
        attrs = sp.attribute[pairs]
        order = np.argsort(attrs, kind="stable")
        bounds = np.flatnonzero(np.concatenate([[True], attrs[order][1:] != attrs[order][:-1], [True]]))
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            pa = pairs[order[lo:hi]]
            a = int(sp.attribute[pa[0]])
            C = sp.num_candidates(a)
            if C < 2:
                continue
            c0 = int(sp.cand_indptr[a])
            ip, tl = sp.truth(pa)
            rows = np.repeat(np.arange(len(pa)), np.diff(ip))
            for k, M in enumerate(sources):
                sub = M[sp.product[pa]][:, c0: c0 + C]
                if sub.nnz == 0:
                    continue
                true_m = float(np.asarray(sub[rows, tl]).sum())
                n_true, n_m, n_all = float(len(tl)), float(sub.nnz), float(len(pa) * C)
                p_m = (true_m + 0.5) / (n_m + 1.0)
                p_n = (n_true - true_m + 0.5) / (n_all - n_m + 1.0)
                out[a, k] = np.clip(np.log(p_m / p_n), -max_abs, max_abs)
        return out

    def _mention(self, attribute: int, products: np.ndarray) -> Any:
        """float [M, C_a, S]: 1 where the product's title (source 0) or description (1) names the candidate
        (``gnn.mentions``)."""
        torch = _torch()
        sp = self.split
        c0, c1 = int(sp.cand_indptr[attribute]), int(sp.cand_indptr[attribute + 1])
        p = np.asarray(products, dtype=np.int64)
        return torch.as_tensor(np.stack([M[p][:, c0:c1].toarray() for M in self._runtime["mention"]], axis=-1))

    def _side_scores(self, attribute: int, products: np.ndarray, *, training: bool = False, prior: Any = None,
                     detach: bool = False) -> Any:
        """The scores added to the decoder's: the weighted text prior (``prior``: its log-probabilities when
        the caller has them) and the weighted mentions (float [M, C_a], or 0.0 when the model has neither)."""
        row = self._attr_row(attribute)
        out: Any = 0.0
        if self.net.prior_w is not None:
            lp = self._prior(attribute, products, training=training) if prior is None else prior
            out = out + (self.net.prior_w[row].detach() if detach else self.net.prior_w[row]) * lp
        if getattr(self.net, "mention_w", None) is not None:
            mw = self.net.mention_w[row]
            out = out + (self._mention(attribute, products) * (mw.detach() if detach else mw)).sum(-1)
        return out

    def _all_candidates(self, x: dict[str, Any]) -> Any:
        """float [sum C_a, H]: every attribute's candidates, in the split's candidate order."""
        torch = _torch()
        sp = self.split
        b0 = int(sp.cand_indptr[sp.brand_attribute])
        vals = self.net.cand(x["value"][torch.as_tensor(sp.cand[:b0])]) if b0 else x["value"].new_zeros((0, self.cfg.hidden))
        brands = self.net.cand(x["brand"][torch.as_tensor(sp.cand[b0:])])
        return torch.cat([vals, brands], 0)

    # -- mini-batches (neighbour sampling in pure torch) ------------------------------------------------
    def _minibatch_epoch(self, graph: dict[tuple[str, str, str], Any], sup_pairs: np.ndarray, opt: Any,
                         params: list[Any], rng: np.random.Generator, *, stop_at: float = float("inf"),
                         min_batches: int = 0) -> tuple[float, float]:
        """One pass over the supervision pairs in batches of ``batch_size`` products; stops early (after at
        least ``min_batches``) once ``time.perf_counter()`` passes ``stop_at``. Returns the mean loss and
        the share of the batches done.

        Each batch message-passes over a subgraph sampled around its products
        (``gnn.sampler.TorchNeighborSampler``, fan-outs ``num_neighbors`` per hop and relation);
        the candidates (every value and brand) are represented from their own inputs
        (``candidate_mp=False``), so one step costs the batch's neighbourhood, not the graph.
        """
        torch = _torch()
        from torch_geometric.data import HeteroData

        from .sampler import TorchNeighborSampler

        cfg, sp, rt = self.cfg, self.split, self._runtime
        data = HeteroData()
        for t in NODE_TYPES:
            data[t].num_nodes = rt["inp"]["n"][t]
        for et, e in graph.items():
            data[et].edge_index = e
        n_hops = max(cfg.layers, 1)
        fan = list(cfg.num_neighbors[:n_hops]) + [cfg.num_neighbors[-1]] * max(0, n_hops - len(cfg.num_neighbors))
        sampler = TorchNeighborSampler(data, num_neighbors=fan, seed=int(rng.integers(2**31)))
        prods = np.unique(sp.product[sup_pairs])
        prods = prods[rng.permutation(len(prods))]
        sup_prod = sp.product[sup_pairs]
        order = np.argsort(sup_prod, kind="stable")
        sorted_prod = sup_prod[order]
        tot, n = 0.0, 0
        starts = range(0, len(prods), cfg.batch_size)
        done = 0
        for lo in starts:
            if done >= min_batches and time.perf_counter() > stop_at:
                break
            done += 1
            chunk = np.sort(prods[lo: lo + cfg.batch_size])
            out = sampler._sample({"product": torch.as_tensor(chunk)})
            sub_inp = self._slice_inputs(out.node)
            sub_edges = {et: torch.stack([out.row[et], out.col[et]]) for et in out.row}
            pos = np.full(rt["inp"]["n"]["product"], -1, np.int64)
            pos[out.node["product"].numpy()] = np.arange(len(out.node["product"]))
            a, b = np.searchsorted(sorted_prod, chunk[0]), np.searchsorted(sorted_prod, chunk[-1], side="right")
            pairs = sup_pairs[order[a:b]]
            pairs = pairs[np.isin(sp.product[pairs], chunk)]
            opt.zero_grad()
            x = self.net(sub_inp, sub_edges)
            K = self._all_candidates(self.net.encode_inputs(rt["inp"], ("value", "brand")))
            loss = self._loss(x, pairs, product_pos=pos, K=K)
            if self.net.head_text is not None:
                loss = loss + self._loss(x, pairs, product_pos=pos, K=K, text=True)
            loss.backward()
            probe = self.__dict__.get("_grad_probe")
            if probe is not None:  # (tests: this step's gradients before clipping, as gnn.distributed compares them)
                probe(self)
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            tot += float(loss.detach()) * len(pairs)
            n += len(pairs)
        return tot / max(n, 1), done / max(len(starts), 1)

    def _slice_inputs(self, nodes: dict[str, Any]) -> dict[str, Any]:
        """The model inputs of the nodes ``nodes[type]`` (global ids, int64), in that order."""
        torch = _torch()
        inp = self._runtime["inp"]
        out: dict[str, Any] = {"n": {t: len(nodes[t]) for t in NODE_TYPES}, "text": {}, "kge": {}, "kge_mask": {},
                               "learn_ids": {}}
        for t in NODE_TYPES:
            ids = nodes[t]
            for k in ("text", "kge", "kge_mask", "learn_ids"):
                if t in inp[k]:
                    out[k][t] = inp[k][t][ids]
        if "tfidf" in inp:
            X = self._runtime["tfidf_csr"][nodes["product"].numpy()]
            out["tfidf"] = (torch.as_tensor(X.indices.astype(np.int64)), torch.as_tensor(X.indptr[:-1].astype(np.int64)),
                            torch.as_tensor(X.data.astype(np.float32)))
        return out

    def _valid_accuracy(self, pairs: np.ndarray, graph: dict[tuple[str, str, str], Any]) -> float:
        torch = _torch()
        self.net.eval()
        sp = self.split
        with torch.no_grad():
            x = self._full_forward(graph)
            q = self.net.query(x["product"])
            K = self._all_candidates(x)
            ok = n_facts = 0
            attrs = sp.attribute[pairs]
            for a in np.unique(attrs).tolist():
                pa = pairs[attrs == a]
                ip, tl = sp.truth(pa)
                c0, c1 = int(sp.cand_indptr[a]), int(sp.cand_indptr[a + 1])
                s = self.net.logits(q[torch.as_tensor(sp.product[pa])], a, K[c0:c1], self._cand_bias(a))
                s = s + self._side_scores(a, sp.product[pa])
                ok += _fact_hits(s.numpy(), ip, tl)
                n_facts += len(tl)
        return ok / max(n_facts, 1)

    def _select_by_valid(self, pairs: np.ndarray, graph: dict[tuple[str, str, str], Any]) -> None:
        """Per attribute, keep the model (graph head), its text head (no messages) or its text prior alone,
        whichever ranks more valid values first (Hits@1 of filtered ranks, as the protocol grades; scored over
        the training facts only; the prior's refitted classifiers never saw a valid fact; a tie keeps the
        former). The model must never be worse than its own text part: the choice is recorded in ``selection``."""
        torch = _torch()
        sp = self.split
        self.text_only: set[int] = set()
        with torch.no_grad():
            x = self._full_forward(graph)
            q = self.net.query(x["product"])
            qt = self.net.query(x["product"], text=True) if self.net.head_text is not None else None
            K = self._all_candidates(x)
            attrs = sp.attribute[pairs]
            for a in np.unique(attrs).tolist():
                pa = pairs[attrs == a]
                if sp.num_candidates(a) < 2:
                    continue
                ip, tl = sp.truth(pa)
                c0, c1 = int(sp.cand_indptr[a]), int(sp.cand_indptr[a + 1])
                lp = self._prior(a, sp.product[pa])
                side = self._side_scores(a, sp.product[pa], prior=lp)
                rows = torch.as_tensor(sp.product[pa])
                cands = {"model": self.net.logits(q[rows], a, K[c0:c1], self._cand_bias(a)) + side}
                if qt is not None:
                    cands["text"] = self.net.logits(qt[rows], a, K[c0:c1], self._cand_bias(a)) + side
                cands["prior"] = lp
                hits = {k: _fact_hits(v.numpy(), ip, tl) for k, v in cands.items()}
                use = max(hits, key=lambda k: hits[k])  # (the first of equals: model, text, prior)
                if use == "prior":
                    self.prior_only.add(int(a))
                elif use == "text":
                    self.text_only.add(int(a))
                self.selection[sp.attribute_names[a]] = {"valid_pairs": int(len(pa)), "valid_values": int(len(tl)),
                                                         **{f"{k}_hits": h for k, h in hits.items()}, "use": use}

    # -- scoring ----------------------------------------------------------------------------------
    def _embeddings(self, hidden_splits: tuple[str, ...]) -> dict[str, Any]:
        """Node representations over the graph of the visible facts minus ``hidden_splits`` (cached)."""
        torch = _torch()
        key = tuple(sorted(hidden_splits))
        cache = self.__dict__.setdefault("_cache", {})
        if key not in cache:
            if not self._runtime:
                self._rebuild_runtime()
            keep = np.isin(self.split.split, [SPLITS.index(s) for s in ("train", "valid") if s not in key])
            prev = torch.get_num_threads()
            torch.set_num_threads(max(1, self.cfg.threads))
            try:
                self.net.eval()
                with torch.no_grad():
                    cache.clear()  # one graph at a time: the cache is for repeated calls on one set
                    x = self._full_forward(self._graph(keep[self._runtime["pair_of_fact"]]))
                    cache[key] = {"q": self.net.query(x["product"]), "K": self._all_candidates(x)}
                    if getattr(self.net, "head_text", None) is not None:
                        cache[key]["q_text"] = self.net.query(x["product"], text=True)
            finally:
                torch.set_num_threads(prev)
        return cache[key]

    def score(self, pairs: np.ndarray) -> PairScores:
        """Probabilities for asserted pairs; the graph hides the facts of every split they belong to."""
        if self.split is None:
            raise ModelError("gnn: call fit() before score()")
        pairs = np.asarray(pairs, dtype=np.int64)
        hidden = tuple(sorted({SPLITS[int(s)] for s in np.unique(self.split.split[pairs])} & {"train", "valid"}))
        if "train" in hidden:
            raise ModelError("gnn: scoring training pairs would grade the model on facts it was trained on")
        self._hidden = hidden
        try:
            return super().score(pairs)
        finally:
            self._hidden = ()

    def _score_attribute(self, attribute: int, products: np.ndarray) -> np.ndarray:
        torch = _torch()
        e = self._embeddings(getattr(self, "_hidden", ()))
        sp = self.split
        C = sp.num_candidates(attribute)
        if C == 0:
            return np.zeros((len(products), 0))
        out = np.empty((len(products), C))
        K = e["K"][int(sp.cand_indptr[attribute]): int(sp.cand_indptr[attribute + 1])]
        cb = self._cand_bias_for(attribute)
        prior_only = self._ranked_by_prior(attribute)
        q_all = e["q_text"] if self._ranked_by_text_head(attribute) else e["q"]
        # Blocks of exactly SCORE_BLOCK rows (the last one padded): a matrix product's rounding depends on its
        # shape, so a product's scores would otherwise depend on which other products are scored with it (a
        # full run vs an incremental one, one process vs Spark partitions; isotonic calibration can turn that
        # last bit into 1e-5). With one shape, the scores are the same whatever the batch.
        with torch.no_grad():
            for lo in range(0, len(products), SCORE_BLOCK):
                pn = np.asarray(products[lo: lo + SCORE_BLOCK], dtype=np.int64)
                n = len(pn)
                pad = np.concatenate([pn, np.full(SCORE_BLOCK - n, pn[0], np.int64)])
                if prior_only:  # chosen on validation: the text prior alone ranks this attribute better
                    out[lo: lo + n] = torch.softmax(self._prior(attribute, pad), dim=1).numpy()[:n]
                    continue
                p = torch.as_tensor(pad)
                s = self.net.logits(q_all[p], self._attr_row(attribute), K, cb) + self._side_scores(attribute, pad)
                out[lo: lo + n] = torch.softmax(s, dim=1).numpy()[:n]
        return out

    def _ranked_by_prior(self, attribute: int) -> bool:
        """The attribute was chosen on validation to be ranked by the text prior alone (``select_by_valid``);
        an attribute new since training (after ``rebind``) never is."""
        known = not bool(self.__dict__.get("_attr_new", np.zeros(attribute + 1, bool))[attribute])
        return known and self._attr_row(attribute) in self.__dict__.get("prior_only", ())

    def _ranked_by_text_head(self, attribute: int) -> bool:
        """The attribute was chosen on validation to be ranked by the text head (``select_by_valid``); an
        attribute new since training never is."""
        known = not bool(self.__dict__.get("_attr_new", np.zeros(attribute + 1, bool))[attribute])
        return known and self._attr_row(attribute) in self.__dict__.get("text_only", ())

    def feature_names(self) -> list[str]:
        """Names of the TF-IDF matrix's columns: word n-grams, ``title~<chars>`` character n-grams of the
        title, ``<property>=<level>`` property tokens (in the matrix's order)."""
        names = [str(x) for x in self.vectorizer.get_feature_names_out()] if getattr(self, "vectorizer", None) else []
        cv = getattr(self, "char_vectorizer", None)
        if cv is not None:
            names += [f"title~{x}" for x in cv.get_feature_names_out()]
        pt = getattr(self, "property_tokens", None)
        if pt is not None:
            names += sorted(pt.vocabulary, key=pt.vocabulary.get)
        return names

    def explain(self, attribute: int, products: np.ndarray, chosen: np.ndarray, *, top_tokens: int = 5
                ) -> list[dict[str, Any]]:
        """What the score of candidate ``chosen[i]`` (local position) of product ``products[i]`` is made of, as
        the model computed it: its logit margin over the best other candidate (the runner-up), split exactly
        into the decoder (``gnn``: text embeddings, graph neighbourhood, learned embeddings, the value's
        bias; ``text_decoder`` instead where the text head ranks the attribute, chosen on validation: the
        product's own inputs, no neighbours), the weighted text prior (``text_prior``) and the weighted mentions in the title and the
        description; and the text features (TF-IDF n-grams, title character n-grams, property tokens) that
        push the prior's classifier most towards the chosen value rather than the runner-up (x * (w_c - w_r)).
        An attribute the prior alone ranks (chosen on validation) has only ``text_prior``."""
        torch = _torch()
        products = np.asarray(products, dtype=np.int64)
        chosen = np.asarray(chosen, dtype=np.int64)
        sp = self.split
        if len(products) == 0:
            return []
        if sp.num_candidates(attribute) < 2:  # nothing to choose between
            return [{"only_candidate": True} for _ in range(len(products))]
        if not self._runtime:  # a loaded model that has not scored in this process (prediction ran elsewhere)
            self._rebuild_runtime()
        row = self._attr_row(attribute)
        prior_only = self._ranked_by_prior(attribute)
        parts: dict[str, np.ndarray] = {}
        with torch.no_grad():
            lp = self._prior(attribute, products) if self.net.prior_w is not None or prior_only else None
            if prior_only:
                parts["text_prior"] = lp.numpy().astype(np.float64)
            else:
                e = self._embeddings(getattr(self, "_hidden", ()))
                K = e["K"][int(sp.cand_indptr[attribute]): int(sp.cand_indptr[attribute + 1])]
                p = torch.as_tensor(products)
                text_head = self._ranked_by_text_head(attribute)
                parts["text_decoder" if text_head else "gnn"] = self.net.logits(
                    e["q_text" if text_head else "q"][p], row, K, self._cand_bias_for(attribute)).numpy().astype(np.float64)
                if self.net.prior_w is not None:
                    parts["text_prior"] = (self.net.prior_w[row] * lp).numpy().astype(np.float64)
                if getattr(self.net, "mention_w", None) is not None:
                    m = (self._mention(attribute, products) * self.net.mention_w[row]).numpy().astype(np.float64)
                    for j, name in enumerate(("title_mention", "description_mention")[: m.shape[-1]]):
                        parts[name] = m[..., j]
        total = sum(parts.values())
        r = np.arange(len(products))
        masked = total.copy()
        masked[r, chosen] = -np.inf
        runner = masked.argmax(1)
        tokens = self._prior_tokens(attribute, products, chosen, runner, top_tokens) if lp is not None else None
        out = []
        for i in range(len(products)):
            d: dict[str, Any] = {"runner_up": int(runner[i]), "margin": round(float(total[i, chosen[i]] - total[i, runner[i]]), 4),
                                 "parts": {k: round(float(v[i, chosen[i]] - v[i, runner[i]]), 4) for k, v in parts.items()}}
            if prior_only:
                d["prior_only"] = True
            elif "text_decoder" in parts:
                d["text_head"] = True  # ranked by the text head (chosen on validation): no neighbour contributed
            if tokens is not None:
                d["text_features"] = tokens[i]
            out.append(d)
        return out

    def _prior_tokens(self, attribute: int, products: np.ndarray, chosen: np.ndarray, runner: np.ndarray, k: int
                      ) -> list[list[list[Any]]]:
        """Per product, the ``k`` text features with the largest x * (w_chosen - w_runner_up) in the prior's
        (refitted) classifier, as [name, contribution]; empty where the classifier is not a weight matrix."""
        m = self.prior.models[-1].get(self._attr_row(attribute)) if getattr(self, "prior", None) is not None else None
        cmap = self.__dict__.get("_cand_map")
        if not isinstance(m, tuple) or cmap is not None:  # (a rebound model's renumbered candidates: not mapped)
            return [[] for _ in products]
        W, _, classes = m
        col = {int(c): j for j, c in enumerate(classes.tolist())}
        names = self._runtime.get("feature_names")  # (the runtime is not saved with the model)
        if names is None:
            names = self._runtime["feature_names"] = self.feature_names()
        X = self._runtime["tfidf_csr"][products]
        Wc = W.tocsc()
        Wc.sort_indices()

        def weights(j: int | None, f: np.ndarray) -> np.ndarray:
            """Column j of W at the feature ids f (0 where it keeps no weight), without densifying it."""
            ci = Wc.indices[Wc.indptr[j]: Wc.indptr[j + 1]] if j is not None else ()
            if not len(ci):
                return np.zeros(len(f), np.float32)
            cv = Wc.data[Wc.indptr[j]: Wc.indptr[j + 1]]
            pos = np.minimum(np.searchsorted(ci, f), len(ci) - 1)
            return np.where(ci[pos] == f, cv[pos], 0.0)

        out = []
        for i in range(len(products)):
            lo, hi = X.indptr[i], X.indptr[i + 1]
            f, x = X.indices[lo:hi], X.data[lo:hi]
            if not len(f) or int(chosen[i]) not in col:
                out.append([])
                continue
            contrib = x * (weights(col[int(chosen[i])], f) - weights(col.get(int(runner[i])), f))
            top = np.argsort(-contrib)[:k]
            out.append([[names[f[t]] if f[t] < len(names) else int(f[t]), round(float(contrib[t]), 4)]
                        for t in top if contrib[t] > 0])
        return out

    def _prior(self, attribute: int, products: np.ndarray, *, training: bool = False) -> Any:
        """float [M, C_a]: the cross-fitted text prior's log-probabilities (``gnn.prior``): out-of-fold
        for training facts; both folds' classifiers averaged when scoring facts neither was fitted on."""
        torch = _torch()
        rt = self._runtime
        products = np.asarray(products, dtype=np.int64)
        X, folds = rt["tfidf_csr"][products], (rt["folds"][products] if training else None)
        cmap = self.__dict__.get("_cand_map")
        if cmap is None:
            return torch.as_tensor(self.prior.logp(attribute, X, folds, self.split.num_candidates(attribute)))
        oa, idx = int(self._attr_row(attribute)), cmap[attribute]
        old = self.prior.logp(oa, X, folds)
        # a candidate new since training is one the classifiers never saw: it gets an unseen value's share
        out = np.full((len(products), len(idx)), self.prior.unseen_logp(oa), np.float32)
        ok = idx >= 0
        if old.shape[1]:
            out[:, ok] = old[:, idx[ok]]
        return torch.as_tensor(out)

    # attribute ids and candidate biases may be renumbered by rebind(); these map to trained rows
    def _attr_row(self, attribute: int) -> int:
        m = self.__dict__.get("_attr_map")
        return attribute if m is None else int(m[attribute])

    def _cand_bias_for(self, attribute: int) -> Any:
        torch = _torch()
        m = self.__dict__.get("_bias_map")
        if m is None:
            return self._cand_bias(attribute).detach()
        idx = m[attribute]
        b = torch.zeros(len(idx))
        ok = idx >= 0
        b[torch.as_tensor(ok)] = self.cand_bias.detach()[torch.as_tensor(idx[ok])]
        return b

    # -- reuse on a later snapshot -------------------------------------------------------------------
    def rebind(self, snap: Snapshot, split: FactSplit) -> "GnnCompletionModel":
        """This trained model over a later snapshot: new products are scored from their text, category
        and neighbours; new values and brands get their text embedding and a learned 'unknown' row."""
        if self.split is None:
            raise ModelError("gnn: a model must be fitted before it is rebound")
        old_split = self.split
        new = copy.copy(self)
        new._runtime, new._cache = {}, {}
        new.key_tables = {t: dict(v) for t, v in self.key_tables.items()}
        new._prepare(snap, split, fit_vectorizer=False)
        old_names = {n: i for i, n in enumerate(old_split.attribute_names)}
        if any(new._runtime["dims"]["text"].get(t) != self._runtime_dims()["text"].get(t) for t in NODE_TYPES):
            raise ModelError("gnn: the new snapshot's text features have another dimension than the model was trained with")
        for f, v in self.feature_versions.items():
            w = new.feature_versions.get(f, {})
            for k in ("encoder", "version"):
                if k in v and w.get(k) != v[k]:
                    raise ModelError(f"gnn: feature {f!r} of the new snapshot was made by {k} {w.get(k)!r}, the model "
                                     f"was trained on {v[k]!r}: retrain, or compute the features with the same encoder")
        # attributes and candidate biases follow names and keys
        amap = np.array([old_names.get(n, -1) for n in split.attribute_names], np.int64)
        bias_map, cand_map = [], []
        for a in range(split.num_attributes):
            oa = amap[a]
            cand_new = split.candidates(a)
            if oa < 0:
                bias_map.append(np.full(len(cand_new), -1, np.int64))
                cand_map.append(np.full(len(cand_new), -1, np.int64))
                continue
            is_brand = a == split.brand_attribute
            old_keys = {k: i for i, k in enumerate(self._fit_candidate_keys()[int(oa)])}
            new_keys = self._cand_keys(split, a, snap, is_brand)
            off = self._bias_offset(int(oa))
            bias_map.append(np.array([off + old_keys[k] if k in old_keys else -1 for k in new_keys], np.int64))
            cand_map.append(np.array([old_keys.get(k, -1) for k in new_keys], np.int64))
        new._attr_map = np.where(amap >= 0, amap, 0)
        new._attr_new = amap < 0
        new._bias_map = bias_map
        new._cand_map = cand_map
        return new

    @staticmethod
    def _cand_keys(split: FactSplit, a: int, snap: Snapshot, is_brand: bool) -> list[Any]:
        recs = snap.nodes["brand" if is_brand else "value"]
        return [recs[int(c)]["key"] if is_brand else tuple(recs[int(c)]["key"]) for c in split.candidates(a)]

    def _fit_candidate_keys(self) -> list[list[Any]]:
        """Per attribute of the training split, the node keys of its candidates (kept in checkpoints,
        so a later snapshot can be matched without the one the model was trained on)."""
        keys = self.__dict__.get("_cand_keys_at_fit")
        if keys is None:
            if getattr(self, "snap", None) is None:
                raise ModelError("gnn: this checkpoint has no candidate keys and its snapshot is not loaded")
            sp = self.split
            keys = [self._cand_keys(sp, a, self.snap, a == sp.brand_attribute) for a in range(sp.num_attributes)]
            self._cand_keys_at_fit = keys
        return keys

    def _bias_offset(self, old_attribute: int) -> int:
        bm = self.__dict__.get("_bias_map")
        if bm is None:
            return int(self._cand_offset[old_attribute])
        raise ModelError("gnn: a rebound model cannot be rebound again; rebind the original")

    def _runtime_dims(self) -> dict[str, Any]:
        return self.__dict__.get("_dims_at_fit") or self._runtime["dims"]

    # -- pickling (checkpoints) -------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["_dims_at_fit"] = self._runtime_dims() if self._runtime else d.get("_dims_at_fit")
        if getattr(self, "snap", None) is not None and "_bias_map" not in d:
            d["_cand_keys_at_fit"] = self._fit_candidate_keys()
        d["_runtime"], d["_cache"] = {}, {}
        net = d.pop("net", None)  # a class local to _build_net: saved as its weights, rebuilt on load
        if net is not None:
            d["net_state"] = net.state_dict()
        d["snap_path"] = str(self.snap.path) if getattr(self, "snap", None) is not None else d.get("snap_path")
        d["snap_fingerprint"] = self.snap.fingerprint if getattr(self, "snap", None) is not None else d.get("snap_fingerprint")
        d.pop("snap", None)
        return d

    def __setstate__(self, d: dict[str, Any]) -> None:
        state = d.pop("net_state", None)
        self.__dict__.update(d)
        self.snap = None
        if state is not None:
            if "mention_w" not in state and getattr(self.cfg, "mentions", False):
                self.cfg.mentions = False  # a checkpoint from before mentions: its net has no mention weights
            if not any(k.startswith("head_text.") for k in state):
                self.cfg.text_head = False  # a checkpoint from before the text head
            self.net = _build_net(self.cfg, d["_dims_at_fit"], [tuple(r) for r in d["_net_rels"]])
            self.net.load_state_dict(state)
            self.net.eval()

    def _rebuild_runtime(self) -> None:
        """After loading a checkpoint: re-read the snapshot it was bound to (it must be unchanged)."""
        path = self.__dict__.get("snap_path")
        if not path:
            raise ModelError("gnn: this model is not bound to a snapshot")
        snap = load_snapshot(path)
        if snap.fingerprint != self.__dict__.get("snap_fingerprint"):
            raise ModelError(f"gnn: the snapshot at {path} changed since this model was saved; rebind() it to the new snapshot")
        self._prepare(snap, self.split, fit_vectorizer=False)


__all__ = ["CONVS", "GnnCompletionModel", "GnnConfig", "ModelError", "leaf_categories"]
