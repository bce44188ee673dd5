"""The Q-Transformer network (Chebotar et al. 2023, §3): per-dimension Q-values over action bins.

Shapes use this einops legend (the reshapes below are ``einops.rearrange``/``repeat`` patterns in it):
  b batch (B)                       s state width (S)              e text-embedding width (E)
  v images per observation (V)      h, w pixels of an image, or of a conv feature map (H, W)
  c channels (C)                    t tokens (per image, or the state's)
  p context tokens (P)              l sequence length (L)          d model width
  n heads                           hd width per head (d / n)      D action dimensions, K bins

Sequence: ``[instruction, state tokens, image tokens | a_0, a_1, ..., a_{D-1}]``.
The context prefix (left of ``|``) attends to itself freely; the token of action dimension ``i`` attends
to the whole prefix and to action tokens ``<= i``. It carries the bin chosen for dimension ``i-1`` (a
learned start embedding for ``i = 0``) plus an embedding of ``i``, and its output is mapped by the Q
head to K values ``Q(s, a_{<i}, a_i = k)``. Training feeds the dataset's bins (teacher forcing, one
pass); acting decodes dimension by dimension, reusing the prefix's keys and values (KV cache).

The network knows nothing about training: targets, optimisers and the Accelerator live elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import cast

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from qtransformer.config import ModelConfig

BinSelector = Callable[[torch.Tensor, int], torch.Tensor]
"""Maps the Q-values of one dimension (B, K) and the dimension index to chosen bins (B,)."""


def supported(logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Bins (..., K) whose predicted probability is at least ``tau`` times the most likely bin's."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp >= logp.max(dim=-1, keepdim=True).values + math.log(tau)


def _checked_stats(
    mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor, n: int, what: str, field: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-value (mean, std) as float32 copies, checked: ``n`` values each, finite, std >= 0."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten().clone()
    std_t = torch.as_tensor(std, dtype=torch.float32).flatten().clone()
    if mean_t.numel() != n or std_t.numel() != n:
        raise ValueError(
            f"{what} statistics must have {n} values each (the model's {field}), "
            f"got mean {mean_t.numel()} and std {std_t.numel()}"
        )
    if not (torch.isfinite(mean_t).all() and torch.isfinite(std_t).all()) or (std_t < 0).any():
        raise ValueError(f"{what} statistics must be finite, with std >= 0")
    return mean_t, std_t


def greedy_selector(q: torch.Tensor, dim: int) -> torch.Tensor:
    return q.argmax(dim=-1)


class FiLM(nn.Module):
    """Feature-wise affine modulation from the instruction (the FiLM-EfficientNet idea, RT-1 / §5)."""

    def __init__(self, text_dim: int, channels: int):
        super().__init__()
        self.proj = nn.Linear(text_dim, 2 * channels)
        nn.init.zeros_(self.proj.weight)  # starts as the identity: gamma = 1, beta = 0
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        gamma, beta = rearrange(self.proj(text), "b (two c) -> two b c 1 1", two=2)  # (B, C, 1, 1) each
        return x * (1.0 + gamma) + beta


class StateEncoder(nn.Module):
    """State MLP whose first hidden layer is FiLM-modulated by the instruction.

    Without FiLM the state is squeezed into its tokens before the instruction can say which part of
    it matters, and the transformer has to undo that; with FiLM the hidden layer is gated by the task.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h = cfg.state_hidden or 2 * cfg.d_model
        self.inp = nn.Linear(cfg.state_dim, h)
        self.film = FiLM(cfg.text_dim, h)
        # Further hidden layers (ModelConfig.state_layers).
        self.hidden = nn.ModuleList(nn.Linear(h, h) for _ in range(cfg.state_layers - 1))
        self.out = nn.Linear(h, cfg.state_tokens * cfg.d_model)

    def forward(self, state: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = self.film(rearrange(self.inp(state), "b c -> b c 1 1"), text)  # (B, hidden, 1, 1)
        x = F.gelu(rearrange(x, "b c 1 1 -> b c"))
        for layer in self.hidden:
            x = F.gelu(layer(x))
        return self.out(x)


class ImageEncoder(nn.Module):
    """FiLM-conditioned conv net + learned spatial attention pooling to a few tokens per image.

    Each stage halves the resolution with a strided conv and may add residual FiLM blocks; every conv
    output is modulated by the instruction, so what the net attends to depends on the task (RT-1's
    FiLM-EfficientNet idea at CPU size). Most of a vision-heavy model's parameters live here, and this
    part runs once per action, while the transformer runs once per action dimension.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        chans = (3, *cfg.conv_channels)
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.films = nn.ModuleList()
        self.residual = []  # per conv: whether it is a residual block
        for i in range(len(chans) - 1):
            for j in range(1 + cfg.conv_blocks):
                c_in = chans[i] if j == 0 else chans[i + 1]
                self.convs.append(nn.Conv2d(c_in, chans[i + 1], 3, stride=2 if j == 0 else 1, padding=1))
                self.norms.append(nn.GroupNorm(8 if chans[i + 1] % 8 == 0 else 1, chans[i + 1]))
                self.films.append(FiLM(cfg.text_dim, chans[i + 1]))
                self.residual.append(j > 0)
        self.attn_maps = nn.Conv2d(chans[-1], cfg.image_tokens, 1)  # TokenLearner-style pooling
        self.out = nn.Linear(chans[-1], cfg.d_model)
        self.coords = nn.Linear(2, cfg.d_model) if cfg.image_coords else None
        self.view_emb = nn.Parameter(torch.zeros(cfg.num_images, 1, cfg.d_model))

    def frame_tokens(self, frames: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Tokens of single frames, before the camera embedding: (N, H, W, 3) uint8 and (N, E) -> (N, T, d).

        A frame's tokens depend only on its pixels and the instruction, so an actor can compute each
        frame once and reuse it while it stays in the observation's frame history (``forward``'s
        ``frame_tokens``)."""
        x = rearrange(frames, "n h w c -> n c h w").float() / 255.0 - 0.5  # (N, 3, H, W)
        # oneDNN re-packs every conv weight on each eager call, which dominates at acting batch sizes;
        # the plain im2col + GEMM path is 2x faster there. Large (training) batches keep oneDNN.
        small = not torch.is_grad_enabled() and x.shape[0] < 16
        was_enabled = torch._C._get_mkldnn_enabled()
        torch._C._set_mkldnn_enabled(was_enabled and not small)
        try:
            for conv, norm, film, res in zip(self.convs, self.norms, self.films, self.residual):
                y = F.gelu(film(norm(conv(x)), text))
                x = x + y if res else y
        finally:
            torch._C._set_mkldnn_enabled(was_enabled)
        weights = rearrange(self.attn_maps(x), "n t h w -> n t (h w)").softmax(dim=-1)  # (N, T, h*w)
        tokens = torch.einsum("ntk,nck->ntc", weights, rearrange(x, "n c h w -> n c (h w)"))  # (N, T, C)
        out = self.out(tokens)  # (N, T, d)
        if self.coords is not None:
            h, w = x.shape[-2:]
            grid = torch.stack(
                torch.meshgrid(
                    torch.linspace(-1.0, 1.0, h, device=x.device),
                    torch.linspace(-1.0, 1.0, w, device=x.device),
                    indexing="ij",
                ),
                dim=-1,
            ).reshape(h * w, 2)  # (h*w, 2): row, column
            out = out + self.coords(weights @ grid)  # expected position of each token's attention
        return out

    def forward(
        self, images: torch.Tensor | None, text: torch.Tensor, frame_tokens: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, V, H, W, 3) uint8 images, or their precomputed ``frame_tokens`` (B, V, T, d) -> (B, V*T, d)."""
        if frame_tokens is None:
            assert images is not None
            V = images.shape[1]
            flat = self.frame_tokens(
                rearrange(images, "b v h w c -> (b v) h w c"), repeat(text, "b e -> (b v) e", v=V)
            )
            frame_tokens = rearrange(flat, "(b v) t d -> b v t d", v=V)  # (B, V, T, d)
        tokens = frame_tokens + self.view_emb[None]  # which camera / frame
        return rearrange(tokens, "b v t d -> b (v t) d")  # (B, V*T, d)


class Block(nn.Module):
    """Pre-norm transformer block whose attention can extend and reuse a KV cache."""

    def __init__(self, d: int, n_heads: int, ff_mult: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff_mult * d), nn.GELU(), nn.Linear(ff_mult * d, d))
        self.drop = nn.Dropout(dropout)
        self.attn_dropout = dropout

    def forward(
        self,
        x: torch.Tensor,  # (B, L, d) new tokens
        mask: torch.Tensor | None,  # (L, L_total) bool, True = may attend; None = attend to everything
        cache: tuple[torch.Tensor, torch.Tensor, int]
        | None = None,  # (K, V, filled) buffers (B, n, L_max, hd)
    ) -> torch.Tensor:
        qkv = rearrange(self.qkv(self.ln1(x)), "b l (three n hd) -> three b n l hd", three=3, n=self.n_heads)
        q, k, v = qkv  # (B, n, L, hd) each
        if cache is not None:
            kbuf, vbuf, filled = cache
            L = x.shape[1]
            kbuf[:, :, filled : filled + L] = k
            vbuf[:, :, filled : filled + L] = v
            k, v = kbuf[:, :, : filled + L], vbuf[:, :, : filled + L]
        p = self.attn_dropout if self.training else 0.0
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, n, L, hd)
        x = x + self.drop(self.proj(rearrange(a, "b n l hd -> b l (n hd)")))
        return x + self.drop(self.ff(self.ln2(x)))


class QTransformer(nn.Module):
    """Maps (state, images, instruction embedding, earlier bins) to Q-values per action dimension."""

    # Buffers registered in __init__ (register_buffer hides their type from the checker).
    state_mean: torch.Tensor
    state_std: torch.Tensor
    instruction_mean: torch.Tensor
    instruction_std: torch.Tensor
    state_keep: torch.Tensor

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, D, K = cfg.d_model, cfg.action_dim, cfg.num_bins
        self.text_in = nn.Linear(cfg.text_dim, d)
        if any(i >= cfg.state_dim for i in cfg.state_ignore):
            raise ValueError(
                f"state_ignore={list(cfg.state_ignore)} names values beyond state_dim={cfg.state_dim}"
            )
        self.state_in = StateEncoder(cfg) if cfg.state_dim > 0 else None
        # Identity unless set_state_stats() is called (ModelConfig.normalize_state); saved with the weights.
        self.register_buffer("state_mean", torch.zeros(cfg.state_dim))
        self.register_buffer("state_std", torch.ones(cfg.state_dim))
        self.register_buffer("instruction_mean", torch.zeros(cfg.text_dim))
        self.register_buffer("instruction_std", torch.ones(cfg.text_dim))
        keep = torch.ones(cfg.state_dim)
        keep[list(cfg.state_ignore)] = 0.0
        # Derived from the config (ModelConfig.state_ignore), so not saved with the weights.
        self.register_buffer("state_keep", keep, persistent=False)
        self.images_in = ImageEncoder(cfg) if cfg.image_size > 0 else None
        self.num_context = 1 + (cfg.state_tokens if cfg.state_dim > 0 else 0)
        self.num_context += cfg.num_images * cfg.image_tokens if cfg.image_size > 0 else 0
        self.context_pos = nn.Parameter(torch.zeros(1, self.num_context, d))
        self.start = nn.Parameter(torch.zeros(1, 1, d))  # stands in for "bin of dimension -1"
        self.bin_emb = nn.Embedding(D * K, d)  # bin k of dimension i -> row i*K + k
        self.dim_emb = nn.Parameter(torch.zeros(1, D, d))
        self.blocks = nn.ModuleList(
            Block(d, cfg.n_heads, cfg.ff_mult, cfg.dropout) for _ in range(cfg.n_layers)
        )
        self.ln_f = nn.LayerNorm(d)

        # Fixed layout (Linear, LayerNorm|Identity, GELU, Dropout, Linear) so that fine-tuning can turn
        # dropout on in a pretrained network without changing its parameter names.
        def q_head() -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(d, d),
                nn.LayerNorm(d) if cfg.head_layernorm else nn.Identity(),
                nn.GELU(),
                nn.Dropout(cfg.head_dropout),
                nn.Linear(d, K),
            )

        self.head = q_head()
        # The ensemble's other heads (ModelConfig.q_ensemble); the first keeps the one-head names.
        self.extra_heads = nn.ModuleList(q_head() for _ in range(cfg.q_ensemble - 1))
        # Support head (ModelConfig.support_tau): logits of the data's bin distribution per dimension.
        self.behavior_head = (
            nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d), nn.GELU(), nn.Linear(d, K))
            if cfg.support_tau > 0
            else None
        )
        self.apply(self._init)
        for p in (self.context_pos, self.start, self.dim_emb):
            nn.init.normal_(p, std=0.02)
        # Scaled init of residual projections (GPT-2): keeps the residual stream's scale with depth.
        for blk in cast(Iterable[Block], self.blocks):
            ff_out = cast(nn.Linear, blk.ff[2])  # Linear, GELU, Linear
            nn.init.normal_(blk.proj.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))
            nn.init.normal_(ff_out.weight, std=0.02 / math.sqrt(2 * cfg.n_layers))

    STATE_STD_FLOOR = 0.01
    """Smallest std the state is divided by: values that hardly vary in the data (a fixed height, an
    absent object's zeros) are not blown up when they do vary at run time."""

    def set_state_stats(
        self, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
    ) -> None:
        """Standardise the state by these per-value statistics (of the training data) from now on."""
        mean_t, std_t = _checked_stats(mean, std, self.cfg.state_dim, "state", "state_dim")
        self.state_mean.copy_(mean_t)
        self.state_std.copy_(std_t.clamp_min(self.STATE_STD_FLOOR))

    INSTRUCTION_STD_FLOOR = 1e-3
    """Smallest std an embedding value is divided by (unit-norm embeddings' values are ~0.05)."""

    def set_instruction_stats(
        self, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
    ) -> None:
        """Standardise the instruction embedding by these per-value statistics from now on."""
        mean_t, std_t = _checked_stats(mean, std, self.cfg.text_dim, "instruction", "text_dim")
        self.instruction_mean.copy_(mean_t)
        self.instruction_std.copy_(std_t.clamp_min(self.INSTRUCTION_STD_FLOOR))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    # ------------------------------------------------------------------ inputs
    def check_inputs(
        self,
        state: torch.Tensor,
        instruction_emb: torch.Tensor,
        images: torch.Tensor | None,
        frame_tokens: torch.Tensor | None = None,
    ) -> None:
        """Shape checks at the model's entry point; cheap enough to run on every call."""
        cfg = self.cfg
        B = instruction_emb.shape[0]
        if instruction_emb.shape != (B, cfg.text_dim):
            raise ValueError(
                f"instruction_emb must be (B, {cfg.text_dim}), got {tuple(instruction_emb.shape)}"
            )
        if cfg.state_dim > 0 and tuple(state.shape) != (B, cfg.state_dim):
            raise ValueError(f"state must be ({B}, {cfg.state_dim}), got {tuple(state.shape)}")
        if cfg.image_size > 0 and frame_tokens is not None:
            want_tokens = (B, cfg.num_images, cfg.image_tokens, cfg.d_model)
            if tuple(frame_tokens.shape) != want_tokens:
                raise ValueError(f"frame_tokens must be {want_tokens}, got {tuple(frame_tokens.shape)}")
        elif cfg.image_size > 0:
            want = (B, cfg.num_images, cfg.image_size, cfg.image_size, 3)
            if images is None or tuple(images.shape) != want:
                got = None if images is None else tuple(images.shape)
                raise ValueError(f"images must be {want} uint8, got {got}")
            if images.dtype != torch.uint8:
                raise ValueError(f"images must be uint8, got {images.dtype}")

    def _instruction(self, instruction_emb: torch.Tensor) -> torch.Tensor:
        if self.cfg.normalize_instruction:
            return (instruction_emb - self.instruction_mean) / self.instruction_std
        return instruction_emb

    def frame_tokens(self, frames: torch.Tensor, instruction_emb: torch.Tensor) -> torch.Tensor:
        """Tokens of single camera frames for ``encode_context``'s ``frame_tokens``: (N, H, W, 3) uint8
        frames and their instructions' embeddings (N, E) -> (N, T, d)."""
        if self.images_in is None:
            raise ValueError("this model reads no images (ModelConfig.image_size is 0)")
        return self.images_in.frame_tokens(frames, self._instruction(instruction_emb))

    def encode_context(
        self,
        state: torch.Tensor,
        instruction_emb: torch.Tensor,
        images: torch.Tensor | None = None,
        frame_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Context tokens (B, P, d): instruction, state and image tokens with position embeddings.
        ``frame_tokens`` (B, V, T, d), from :meth:`frame_tokens`, stand in for the images."""
        self.check_inputs(state, instruction_emb, images, frame_tokens)
        instruction_emb = self._instruction(instruction_emb)
        toks = [rearrange(self.text_in(instruction_emb), "b d -> b 1 d")]
        if self.state_in is not None:
            state = (state - self.state_mean) / self.state_std
            if self.cfg.state_ignore:
                state = state * self.state_keep
            state_toks = self.state_in(state, instruction_emb)  # (B, T*d)
            toks.append(rearrange(state_toks, "b (t d) -> b t d", t=self.cfg.state_tokens))
        if self.images_in is not None:
            toks.append(self.images_in(images, instruction_emb, frame_tokens))
        return torch.cat(toks, dim=1) + self.context_pos

    def bin_tokens(self, bins: torch.Tensor, first_dim: int = 0) -> torch.Tensor:
        """Input tokens of chosen bins: (B, j) bins of dimensions first_dim.. -> (B, j, d)."""
        j, K = bins.shape[1], self.cfg.num_bins
        offsets = (torch.arange(j, device=bins.device) + first_dim) * K
        return self.bin_emb(bins + offsets)

    def action_tokens(self, prev_bins: torch.Tensor) -> torch.Tensor:
        """Tokens for dimensions 0..j given the bins of dimensions 0..j-1: (B, j) -> (B, j+1, d)."""
        B, j = prev_bins.shape
        prev = self.bin_tokens(prev_bins)  # (B, j, d)
        toks = torch.cat([self.start.expand(B, 1, -1), prev], dim=1)
        return toks + self.dim_emb[:, : j + 1]

    def _mask(self, num_new: int, num_ctx: int, device: torch.device) -> torch.Tensor:
        """Prefix-causal mask: (L, L) with L = num_ctx + num_new; context is bidirectional."""
        L = num_ctx + num_new
        i = torch.arange(L, device=device)
        return (i[None, :] < num_ctx) | (i[None, :] <= i[:, None])

    def set_head_dropout(self, p: float) -> None:
        """Change the Q head's dropout rate (no parameters change, so checkpoints stay compatible)."""
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        for head in self.q_heads():
            cast(nn.Dropout, head[3]).p = p  # the fixed head layout above
        self.cfg.head_dropout = p

    def q_heads(self) -> list[nn.Sequential]:
        return [self.head, *cast(Iterable[nn.Sequential], self.extra_heads)]

    def _activate(self, q: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(q) if self.cfg.q_activation == "sigmoid" else q

    def q_members(self, h: torch.Tensor) -> torch.Tensor:
        """Every ensemble head's Q-values: (E, *h.shape[:-1], K)."""
        x = self.ln_f(h)
        return self._activate(torch.stack([head(x) for head in self.q_heads()]))

    def q_values(self, h: torch.Tensor) -> torch.Tensor:
        """Q-values (*h.shape[:-1], K): the ensemble's mean (the one head's, without an ensemble)."""
        if self.cfg.q_ensemble == 1:
            return self._activate(self.head(self.ln_f(h)))
        return self.q_members(h).mean(0)

    def behavior_logits(self, h: torch.Tensor) -> torch.Tensor:
        if self.behavior_head is None:
            raise ValueError("this model has no support head (ModelConfig.support_tau is 0)")
        return self.behavior_head(self.ln_f(h))

    def _hidden(
        self,
        state: torch.Tensor,
        instruction_emb: torch.Tensor,
        prev_bins: torch.Tensor,
        images: torch.Tensor | None,
    ) -> torch.Tensor:
        """Final hidden states of the action tokens for dimensions 0..j: (B, j+1, d)."""
        ctx = self.encode_context(state, instruction_emb, images)
        x = torch.cat([ctx, self.action_tokens(prev_bins)], dim=1)
        mask = self._mask(prev_bins.shape[1] + 1, ctx.shape[1], x.device)
        for blk in self.blocks:
            x = blk(x, mask)
        return x[:, ctx.shape[1] :]

    # ------------------------------------------------------------------ training
    def forward(
        self,
        state: torch.Tensor,  # (B, S)
        instruction_emb: torch.Tensor,  # (B, E)
        prev_bins: torch.Tensor,  # (B, j), 0 <= j <= D-1: bins of dimensions 0..j-1
        images: torch.Tensor | None = None,  # (B, V, H, W, 3) uint8
        return_behavior: bool = False,
        members: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced Q-values for dimensions 0..j: (B, j+1, K), or with ``members`` every ensemble
        head's (E, B, j+1, K); with ``return_behavior`` also the support head's logits (B, j+1, K)."""
        if prev_bins.ndim != 2 or prev_bins.shape[1] > self.cfg.action_dim - 1:
            raise ValueError(
                f"prev_bins must be (B, j) with j <= {self.cfg.action_dim - 1}, got {tuple(prev_bins.shape)}"
            )
        h = self._hidden(state, instruction_emb, prev_bins, images)
        q = self.q_members(h) if members else self.q_values(h)
        if return_behavior:
            return q, self.behavior_logits(h)
        return q

    # ------------------------------------------------------------------ acting
    @torch.no_grad()
    def decode(
        self,
        state: torch.Tensor,
        instruction_emb: torch.Tensor,
        images: torch.Tensor | None = None,
        select: BinSelector = greedy_selector,
        use_cache: bool = True,
        bin_limits: tuple[torch.Tensor, torch.Tensor] | None = None,
        support_tau: float | None = None,
        frame_tokens: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Choose bins dimension by dimension. Returns (bins (B, D) int64, Q-values (B, D, K)).

        ``select`` picks each dimension's bin (greedy by default; exploration only when passed in).
        ``bin_limits`` = (low, high) int tensors (B, D): bins outside [low, high] are never chosen
        (cautious exploration restricts the action range this way). ``use_cache=False`` re-runs the
        whole sequence for every dimension (the reference the cached decode must match exactly).
        ``support_tau`` (default ``cfg.support_tau``) keeps the choice among the bins the support head
        finds likely enough. With ``bin_limits`` too, the choice among the supported bins is made first
        and then clipped into the limits: the limits bound how far the robot may move, not what it
        decides. Choosing instead among the supported bins that happen to lie inside the limits swaps the
        decision: a hand holding an object whose support allows "lift at full speed" and "stay" stays
        while a limit cuts off the lift. (The bins outside the support are not an alternative: they are
        the ones the Q-function overrates.)
        """
        D = self.cfg.action_dim
        tau = self.cfg.support_tau if support_tau is None else support_tau
        if tau > 0 and self.behavior_head is None:
            raise ValueError("support_tau > 0 needs a model with a support head (ModelConfig.support_tau)")
        B = instruction_emb.shape[0]
        bins = torch.zeros(B, D, dtype=torch.long, device=instruction_emb.device)
        qs = []

        def choose(h: torch.Tensor, i: int) -> torch.Tensor:
            q = self.q_values(h)  # (B, K)
            qs.append(q)
            if tau > 0:
                sup = supported(self.behavior_logits(h), tau)
                pick = select(q.masked_fill(~sup, float("-inf")), i)
                if bin_limits is None:
                    return pick
                return torch.minimum(torch.maximum(pick, bin_limits[0][:, i]), bin_limits[1][:, i])
            if bin_limits is None:  # the plain greedy decode (the serving path) builds no mask
                return select(q, i)
            k = torch.arange(q.shape[-1], device=q.device)
            ok = (k[None] >= bin_limits[0][:, i, None]) & (k[None] <= bin_limits[1][:, i, None])
            return select(q.masked_fill(~ok, float("-inf")), i)

        if not use_cache:
            if frame_tokens is not None:
                raise ValueError("frame_tokens need the cached decode (use_cache=True)")
            for i in range(D):
                bins[:, i] = choose(self._hidden(state, instruction_emb, bins[:, :i], images)[:, -1], i)
            return bins, torch.stack(qs, dim=1)

        ctx = self.encode_context(state, instruction_emb, images, frame_tokens)
        P = ctx.shape[1]
        d, h = self.cfg.d_model, self.cfg.n_heads
        caches = [
            (ctx.new_empty(B, h, P + D, d // h), ctx.new_empty(B, h, P + D, d // h)) for _ in self.blocks
        ]
        x = torch.cat([ctx, self.start.expand(B, 1, -1) + self.dim_emb[:, :1]], dim=1)  # (B, P+1, d)
        mask: torch.Tensor | None = self._mask(1, P, x.device)
        filled = 0
        for i in range(D):
            for blk, (kb, vb) in zip(self.blocks, caches):
                x = blk(x, mask, (kb, vb, filled))
            filled += x.shape[1]
            bins[:, i] = choose(x[:, -1], i)
            if i + 1 < D:
                x = self.bin_tokens(bins[:, i : i + 1], i) + self.dim_emb[:, i + 1 : i + 2]  # (B, 1, d)
                mask = None  # one new token attends to every cached one
        return bins, torch.stack(qs, dim=1)
