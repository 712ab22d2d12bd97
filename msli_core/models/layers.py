"""Building blocks shared by the MS-LI segment encoder and the cross-encoder, small parts first
(nanoGPT order): self-attention → MLP → block → item features → item encoder.

Padding convention: item id 0 is padding everywhere; the item encoder's row 0 is exactly zero.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

YEAR_BUCKET_START = 1900  # year buckets of 5 years from 1900; bucket 0 = unknown year or padding
YEAR_BUCKET_WIDTH = 5
YEAR_BUCKETS = 27  # 0 = unknown, 1..26 cover 1900..2029 (later years share the last bucket)


class SelfAttention(nn.Module):
    """Multi-head self-attention over (B, T, d); causal, or bidirectional with a key-padding mask."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        # no dropout on attention probabilities: on CPU it forces PyTorch's slow "math" attention path
        # (about 4x slower here); dropout on the residual branch regularises enough for these sizes
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, *, causal: bool, key_mask: Tensor | None = None) -> Tensor:
        B, T, C = x.size()  # batch, sequence length, width d
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, T, hs)
        attn_mask = None if key_mask is None else key_mask.view(B, 1, 1, T)  # True = may attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=causal)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, d)
        return self.resid_dropout(self.proj(y))


class FeedForward(nn.Module):
    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.fc = nn.Linear(dim, 4 * dim)
        self.proj = nn.Linear(4 * dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block (attention then MLP, each with a residual)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads, dropout)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, dropout)

    def forward(self, x: Tensor, *, causal: bool, key_mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.ln_1(x), causal=causal, key_mask=key_mask)
        return x + self.mlp(self.ln_2(x))


def year_bucket(years: np.ndarray) -> np.ndarray:
    """(N,) float years (NaN = unknown) -> (N,) int64 buckets in ``0..YEAR_BUCKETS-1`` (0 = unknown).

    >>> year_bucket(np.array([np.nan, 1899.0, 1900.0, 1995.0, 2100.0])).tolist()
    [0, 1, 1, 20, 26]
    """
    years = np.asarray(years, dtype=np.float64)
    known = np.isfinite(years)
    buckets = np.zeros(len(years), dtype=np.int64)
    raw = np.floor((years[known] - YEAR_BUCKET_START) / YEAR_BUCKET_WIDTH).astype(np.int64)
    buckets[known] = np.clip(raw, 0, YEAR_BUCKETS - 2) + 1
    return buckets


def item_features(data) -> tuple[np.ndarray, np.ndarray]:
    """Item side features of an :class:`~msli_core.data.dataset.InteractionData`.

    Returns ``genres`` (N+1, G) float32 multi-hot rows scaled to sum 1 (row 0 and genre-less items are
    zero) and ``years`` (N+1,) int64 year buckets (0 = unknown / padding).
    """
    names = data.genre_names
    column = {g: j for j, g in enumerate(names)}
    genres = np.zeros((data.n_items + 1, len(names)), dtype=np.float32)
    for row, text in enumerate(data.items["genres"].tolist()):
        if row == 0 or not text:
            continue
        for g in text.split("|"):
            if g in column:
                genres[row, column[g]] = 1.0
    counts = genres.sum(1, keepdims=True)
    genres = np.divide(genres, counts, out=np.zeros_like(genres), where=counts > 0)
    years = year_bucket(data.items["year"].to_numpy(np.float64))
    years[0] = 0
    return genres, years


class ItemEncoder(nn.Module):
    """Offline stage: ``e_i = id_embedding(i) + W_genre · genres(i) + year_embedding(bucket(i))``.

    The feature tables are buffers (saved with the model); without data they are zero, so the encoder
    still runs for benchmarks. Row 0 (padding) of the table is exactly zero.
    """

    def __init__(self, n_items: int, n_genres: int, dim: int):
        super().__init__()
        self.ids = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.genre_projection = nn.Linear(max(1, n_genres), dim, bias=False)
        self.years = nn.Embedding(YEAR_BUCKETS, dim)
        self.register_buffer("genre_features", torch.zeros(n_items + 1, max(1, n_genres)))  # (N+1, G)
        self.register_buffer("year_features", torch.zeros(n_items + 1, dtype=torch.long))  # (N+1,)
        self.register_buffer("not_padding", (torch.arange(n_items + 1) > 0).float().unsqueeze(1))  # (N+1, 1)

    def set_features(self, genres: np.ndarray, years: np.ndarray) -> None:
        if genres.shape[1] == 0:
            genres = np.zeros((genres.shape[0], 1), dtype=np.float32)
        if tuple(genres.shape) != tuple(self.genre_features.shape) or len(years) != len(self.year_features):
            raise ValueError(
                f"item features of shape {genres.shape}/{years.shape} do not fit the model's "
                f"{tuple(self.genre_features.shape)}"
            )
        self.genre_features.copy_(torch.as_tensor(genres, dtype=torch.float32))
        self.year_features.copy_(torch.as_tensor(years, dtype=torch.long))

    def forward(self) -> Tensor:
        table = self.ids.weight + self.genre_projection(self.genre_features) + self.years(self.year_features)
        return table * self.not_padding  # (N+1, d), row 0 = 0

    @torch.no_grad()
    def table(self, chunk: int = 1 << 15) -> Tensor:
        """``forward()`` without autograd, built ``chunk`` rows at a time into one preallocated (N+1, d)
        tensor: serving holds one copy of the table, and its temporaries stay a few MB at any N."""
        n, d = self.ids.weight.shape
        out = torch.empty(n, d, dtype=self.ids.weight.dtype)
        for lo in range(0, n, chunk):
            rows = slice(lo, min(lo + chunk, n))
            part = torch.add(
                self.ids.weight[rows], self.genre_projection(self.genre_features[rows]), out=out[rows]
            )
            part.add_(self.years(self.year_features[rows])).mul_(self.not_padding[rows])
        return out  # (N+1, d), row 0 = 0


class LowRankLinear(nn.Module):
    """``x -> B A x`` without bias: a (dim, dim) map of rank at most ``rank``, held as its factors
    A = ``down`` (rank, dim) and B = ``up`` (dim, rank), so ``<B A x, e> = <A x, B^T e>`` costs ``rank``
    multiply-adds per pair once ``B^T e`` is computed for every e."""

    def __init__(self, dim: int, rank: int):
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)  # A
        self.up = nn.Linear(rank, dim, bias=False)  # B

    def forward(self, x: Tensor) -> Tensor:
        """(..., dim) -> (..., dim)."""
        return self.up(self.down(x))


def init_weights(module: nn.Module) -> None:
    """nanoGPT initialisation: N(0, 0.02) for linear and embedding weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def ceil_div(a: int, b: int) -> int:
    return math.ceil(a / b)
