"""The per-example gradient engine (SPICE, LESS, gradient norms; later DsDm / TRAK).

Written against ``core.protocols.TaskAdapter`` only, so methods import it directly and the
runners' adapters delegate ``per_example_grads`` / ``grad_features`` to it: there is one
engine.

What it computes, for a pool of any size (streamed in chunks of ``chunk`` examples):

- ``per_example_grads(adapter, x, y, which, fn)``: exact flattened gradients ``[B, P]`` of
  the loss (``fn="loss"``) or the adapter's ``scalar_output`` (``fn="output"``: margin /
  LM log-odds) w.r.t. ``adapter.param_subset(which)``, via ``vmap(grad(...))`` (an exact
  per-example loop for models ``vmap`` cannot trace, ``model.vmap_ok = False``);
- ``grad_features(adapter, x, y, spec)`` with ``spec.proj``:

  * ``none``: the exact gradients (``[N, P]``; small subsets only);
  * ``dense``: exact gradients projected to ``spec.dim`` dims by a seeded Gaussian matrix
    ``R`` (entries N(0, 1/d)) that is generated blockwise (``BlockProjector``: rows
    ``[j·block, (j+1)·block)`` from a generator seeded by ``(seed, j)``), so the
    ``P × d`` matrix is never materialised (blocks are kept in memory only while they fit
    ``max_cache_bytes``);
  * ``factored`` (LoGra, Choe et al. 2024): for ``nn.Linear`` layers (LoRA's A/B linears
    included) the per-example gradient of ``W`` is ``Σ_t b_t a_tᵀ`` (``a``: the layer input,
    ``b``: the gradient w.r.t. its output, summed over positions ``t`` of a sequence), so
    ``(P_out ⊗ P_in) vec(G) = vec(Σ_t (P_out b_t)(P_in a_t)ᵀ)``.  One ordinary batched
    forward + backward of the summed per-example losses captures every ``a`` (forward hook)
    and ``b`` (tensor hook on the output); the per-example gradient is never formed.
    A bias is handled by appending a constant 1 to ``a`` (the bias gradient is ``Σ_t b_t``),
    i.e. the layer is treated as ``[W | bias]``.  Each layer gets
    ``k = round(sqrt(dim / n_layers))`` dims per side (``P_in: k × (in+1)``,
    ``P_out: k × out``, seeded per layer); a side whose size is ≤ k is kept exact (identity).
    Every parameter of the subset must belong to an ``nn.Linear`` (subset ``linears:<spec>``
    of the adapters picks those); anything else is a one-line ``ConfigError``.

  The model is in eval mode (dropout off, BatchNorm on running statistics), so each
  example's gradient is its own and the batched pass is exact.

``model_state_hash`` and ``data_fingerprint`` key cached features (``ctx.cache``).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

from selbench.core.errors import ConfigError
from selbench.core.modes import eval_mode

PROJECTIONS = ("none", "dense", "factored")
FNS = ("loss", "output")


@dataclass(frozen=True)
class GradSpec:
    """What gradient features to compute (everything that changes them; the cache key)."""

    params: str = "linears:head"   #: ``adapter.param_subset`` name
    fn: str = "loss"               #: loss | output
    proj: str = "factored"         #: none | dense | factored
    dim: int = 1024                #: projected dimension (factored: about dim, see module doc)
    seed: int = 0                  #: projection seed
    chunk: int = 256               #: examples per engine pass

    def __post_init__(self):
        if self.fn not in FNS:
            raise ConfigError(f"gradient fn={self.fn!r} (choose from: {', '.join(FNS)})")
        if self.proj not in PROJECTIONS:
            raise ConfigError(f"gradient projection={self.proj!r} (choose from: {', '.join(PROJECTIONS)})")
        if int(self.dim) < 1 or int(self.chunk) < 1:
            raise ConfigError(f"gradient dim={self.dim} and chunk={self.chunk} must be positive")

    def key(self) -> dict:
        return asdict(self)


# -- hashing ----------------------------------------------------------------------------------
def _hash_tensor(h, t: Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def model_state_hash(model: nn.Module) -> str:
    """sha1 of the model's parameters and buffers (the gradients depend on exactly these)."""
    h = hashlib.sha1()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        _hash_tensor(h, t)
    return h.hexdigest()[:16]


def data_fingerprint(*tensors: Tensor) -> str:
    h = hashlib.sha1()
    for t in tensors:
        _hash_tensor(h, t)
    return h.hexdigest()[:16]


# -- exact per-example gradients ----------------------------------------------------------------
def _single_fn(adapter, fn: str):
    return adapter.single_loss if fn == "loss" else adapter.scalar_output


def per_example_grads(adapter, x: Tensor, y: Tensor, which: str = "head", fn: str = "loss",
                      chunk: int = 256) -> Tensor:
    """Exact flattened per-example gradients ``[B, P]`` (parameter order of ``param_subset``)."""
    params = {k: v.detach() for k, v in adapter.param_subset(which).items()}
    f = _single_fn(adapter, fn)
    model = adapter.model
    with eval_mode(model):
        x, y = adapter.prepare_batch(x, y)
        if getattr(model, "vmap_ok", True):
            out = vmap(grad(f), in_dims=(None, 0, 0), chunk_size=chunk)(params, x, y)
            flat = torch.cat([out[k].reshape(len(x), -1) for k in params], dim=1)
        else:
            rows = []
            for i in range(len(x)):
                p = {k: v.clone().requires_grad_(True) for k, v in params.items()}
                g = torch.autograd.grad(f(p, x[i], y[i]), list(p.values()), allow_unused=True)
                rows.append(torch.cat([(gi if gi is not None else torch.zeros_like(v)).reshape(-1)
                                       for gi, v in zip(g, p.values())]))
            flat = torch.stack(rows) if rows else torch.zeros(0, sum(v.numel() for v in params.values()))
    adapter.cost.count(forward=len(x), backward=len(x))
    return flat


# -- blockwise dense projection -------------------------------------------------------------------
class BlockProjector:
    """``G @ R`` for a seeded Gaussian ``R: [P, d]`` (entries N(0, 1/d)) generated ``block`` rows
    at a time from ``torch.Generator().manual_seed(seed * 1_000_003 + j)``; float32 throughout."""

    def __init__(self, n_params: int, dim: int, seed: int = 0, block: int = 4096,
                 max_cache_bytes: int = 256 * 2 ** 20):
        self.P, self.d, self.seed, self.block = int(n_params), int(dim), int(seed), int(block)
        self.cache_ok = self.P * self.d * 4 <= max_cache_bytes
        self._blocks: dict[int, Tensor] = {}

    def block_matrix(self, j: int, device) -> Tensor:
        if j in self._blocks:
            return self._blocks[j].to(device)
        rows = min(self.block, self.P - j * self.block)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + j)
        r = torch.randn(rows, self.d, generator=g, dtype=torch.float32) / math.sqrt(self.d)
        if self.cache_ok:
            self._blocks[j] = r
        return r.to(device)

    def dense(self) -> Tensor:
        """The whole ``[P, d]`` matrix (tests only)."""
        return torch.cat([self.block_matrix(j, "cpu") for j in range(math.ceil(self.P / self.block))])

    def __call__(self, G: Tensor) -> Tensor:
        out = torch.zeros(len(G), self.d, dtype=torch.float32, device=G.device)
        for j in range(math.ceil(self.P / self.block)):
            out += G[:, j * self.block:(j + 1) * self.block].float() @ self.block_matrix(j, G.device)
        return out


# -- factored (LoGra) projection ------------------------------------------------------------------
@dataclass
class _Layer:
    name: str
    module: nn.Linear
    bias: bool          # the bias is in the subset: a gets a constant 1 appended
    p_in: Tensor | None   # [k_in, in(+1)] or None (identity)
    p_out: Tensor | None  # [k_out, out] or None (identity)

    @property
    def dim(self) -> int:
        k_in = self.p_in.shape[0] if self.p_in is not None else self.module.in_features + int(self.bias)
        k_out = self.p_out.shape[0] if self.p_out is not None else self.module.out_features
        return k_in * k_out


def _gauss(rows: int, cols: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g, dtype=torch.float32) / math.sqrt(rows)


def linear_layers(model: nn.Module, subset: dict[str, Tensor]) -> list[tuple[str, nn.Linear, bool]]:
    """The ``nn.Linear`` layers owning the subset's parameters, in subset order; raises if one
    parameter is not a Linear's weight / bias, or a bias is in without its weight."""
    owner = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            owner[id(m.weight)] = (name, m, "weight")
            if m.bias is not None:
                owner[id(m.bias)] = (name, m, "bias")
    layers: dict[str, list] = {}
    bad = []
    for pname, p in subset.items():
        o = owner.get(id(p))
        if o is None:
            bad.append(pname)
            continue
        entry = layers.setdefault(o[0], [o[1], False, False])
        entry[1 if o[2] == "weight" else 2] = True
    if bad:
        raise ConfigError(f"projection=factored needs nn.Linear parameters only; not Linear: {', '.join(bad[:4])}"
                          f"{' …' if len(bad) > 4 else ''} (use a linears:<subset> parameter subset or projection=dense)")
    out = []
    for name, (m, w, b) in layers.items():
        if not w:
            raise ConfigError(f"projection=factored: the bias of {name} is in the subset without its weight")
        out.append((name, m, b))
    return out


class FactoredProjector:
    """Per-layer ``P_in`` / ``P_out`` (seeded by ``seed`` and the layer's position)."""

    def __init__(self, layers: list[tuple[str, nn.Linear, bool]], dim: int, seed: int = 0):
        k = max(1, round(math.sqrt(dim / max(len(layers), 1))))
        self.layers = []
        for j, (name, m, bias) in enumerate(layers):
            n_in, n_out = m.in_features + int(bias), m.out_features
            p_in = None if n_in <= k else _gauss(k, n_in, seed * 1_000_003 + 2 * j)
            p_out = None if n_out <= k else _gauss(k, n_out, seed * 1_000_003 + 2 * j + 1)
            self.layers.append(_Layer(name, m, bias, p_in, p_out))
        self.dim = sum(layer.dim for layer in self.layers)

    def dense_layer_matrix(self, j: int) -> Tensor:
        """``P_out ⊗ P_in`` of layer ``j`` (``[k_out·k_in, out·(in+1)]``; tests only)."""
        L = self.layers[j]
        p_in = L.p_in if L.p_in is not None else torch.eye(L.module.in_features + int(L.bias))
        p_out = L.p_out if L.p_out is not None else torch.eye(L.module.out_features)
        return torch.kron(p_out, p_in)


def factored_features(adapter, x: Tensor, y: Tensor, proj: FactoredProjector, fn: str = "loss") -> Tensor:
    """``[B, proj.dim]`` projected per-example gradients from one batched forward + backward."""
    model = adapter.model
    acts: dict[int, list] = {j: [] for j in range(len(proj.layers))}
    grads: dict[int, list] = {j: [] for j in range(len(proj.layers))}
    hooks = []

    def make_hook(j):
        def hook(mod, inp, out):
            acts[j].append(inp[0].detach())
            if out.requires_grad:
                out.register_hook(lambda g: grads[j].append(g.detach()))
        return hook

    subset_ids = {id(L.module.weight) for L in proj.layers} | {id(L.module.bias) for L in proj.layers if L.bias}
    saved = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in saved:  # only the subset's layers need gradients (and the graph above them)
            p.requires_grad_(id(p) in subset_ids)
        for j, L in enumerate(proj.layers):
            hooks.append(L.module.register_forward_hook(make_hook(j)))
        with eval_mode(model), torch.enable_grad():
            per = adapter.per_example_loss(x, y) if fn == "loss" else adapter.per_example_output(x, y)
            B = len(per)
            wanted = [p for p, _ in saved if id(p) in subset_ids]
            torch.autograd.grad(per.sum(), wanted, allow_unused=True)
    finally:
        for h in hooks:
            h.remove()
        for p, rg in saved:
            p.requires_grad_(rg)
    adapter.cost.count(backward=B)
    feats = []
    for j, L in enumerate(proj.layers):
        if not acts[j] or not grads[j]:
            feats.append(torch.zeros(B, L.dim, device=per.device))
            continue
        # a module called several times: calls along the position axis; backward hooks fire in reverse
        a = torch.cat([t.reshape(B, -1, t.shape[-1]) for t in acts[j]], dim=1).float()
        b = torch.cat([t.reshape(B, -1, t.shape[-1]) for t in reversed(grads[j])], dim=1).float()
        if L.bias:
            a = torch.cat([a, torch.ones_like(a[..., :1])], dim=-1)
        pa = a if L.p_in is None else a @ L.p_in.to(a.device).T
        pb = b if L.p_out is None else b @ L.p_out.to(b.device).T
        feats.append(torch.einsum("bto,bti->boi", pb, pa).reshape(B, -1))
    return torch.cat(feats, dim=1)


# -- the streamed driver ---------------------------------------------------------------------------
def grad_features(adapter, x: Tensor, y: Tensor, spec: GradSpec | None = None) -> Tensor:
    """``[N, d]`` float32 CPU gradient features of every example, ``spec.chunk`` at a time."""
    spec = spec or GradSpec()
    subset = adapter.param_subset(spec.params)
    if not subset:
        raise ConfigError(f"parameter subset {spec.params!r} is empty for this model")
    if spec.proj == "factored":
        proj = FactoredProjector(linear_layers(adapter.model, subset), spec.dim, spec.seed)
        one = lambda xb, yb: factored_features(adapter, xb, yb, proj, spec.fn)  # noqa: E731
        d = proj.dim
    else:
        P = sum(v.numel() for v in subset.values())
        bp = BlockProjector(P, spec.dim, spec.seed) if spec.proj == "dense" else None
        d = spec.dim if bp else P

        def one(xb, yb):
            g = per_example_grads(adapter, xb, yb, spec.params, spec.fn, chunk=spec.chunk)
            return bp(g) if bp else g.float()
    parts = [one(x[i:i + spec.chunk], y[i:i + spec.chunk]).cpu() for i in range(0, len(x), spec.chunk)]
    return torch.cat(parts) if parts else torch.zeros(0, d)
