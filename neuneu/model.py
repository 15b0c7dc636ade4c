"""The networks (pure torch, no Lightning): neuneu's layout and the published reference layout.

Both map (context tokens, query tokens) of a batch of episodes to five quantiles per query in
the normalised target space of `neuneu.features` (scaled change from the anchor accuracy):

    forward(context (B, C, F), context_mask (B, C), query (B, Q, F), query_mask (B, Q),
            anchor (B,)) -> (B, Q, 5)

neuneu layout: one token per point (an MLP over the point's features), a pre-LN encoder in
which context tokens attend to context tokens and every query token attends to the context and
to itself only. That is exactly an encoder with the block mask [[ctx→ctx], [query→ctx + self]],
but computed without the (C+Q)² matrix: the query rows are O(Q·C), so an episode with 700
queries costs little more than its context, and queries cannot see each other by construction.

ref layout (the ablation of issue 4 item 7, after the published NeuNeu): one sequence per query
[BOS, ctx_0 … ctx_c]; a context token is linear(accuracy) ‖ linear(gap), where the gap is 0
except on the last context token, which carries the query's distance in checkpoints; learned
positions stand in for RoPE; bidirectional pre-LN encoder; read out at BOS; a plain linear head
predicting raw accuracy (we convert it to the common target space so training is shared).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as Fn
from torch import nn

from neuneu.episodes import QUANTILES
from neuneu.features import ACC_SCALE, F, input_columns

LAYOUTS = ("neuneu", "ref")


@dataclass
class ModelConfig:
    """Network shape. Code defaults are a small neutral network; the shipped model's values live
    in `configs/default.yaml` only."""

    layout: str = "neuneu"  # "neuneu" (all queries in one pass) or "ref" (published layout)
    d_model: int = 96  # token width
    n_layers: int = 3  # encoder blocks
    n_heads: int = 4  # attention heads; d_model must be divisible by it
    d_ff: int = 192  # hidden width of each block's MLP (and of the token MLP)
    dropout: float = 0.0  # small data, short training: dropout mostly slowed convergence
    law_features: bool = False  # neuneu layout: also read the law features (`neuneu.features.law_features`)
    own_run: bool = False  # neuneu layout: also read which run each context point is of (ladder episodes)
    schedule_features: bool = False  # neuneu layout: also read the planned-lr features (`neuneu.schedule`)
    loss_level: bool = True  # neuneu layout: read the absolute loss too (False: only its differences)
    acc_level: bool = True  # neuneu layout: read the absolute accuracy too (False: only its differences)
    scale_features: bool = False  # neuneu layout: also read the absolute model size and tokens per parameter
    max_context: int = 64  # ref layout: size of the position table (neuneu layout: unused)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"model.layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.n_heads < 1 or self.d_model % self.n_heads:
            raise ValueError(f"model.d_model ({self.d_model}) must be divisible by model.n_heads ({self.n_heads})")
        # the neuneu layout's input options, at anything but their defaults, need that layout
        for flag, default in (("law_features", False), ("own_run", False), ("schedule_features", False),
                              ("scale_features", False), ("loss_level", True), ("acc_level", True)):
            if getattr(self, flag) != default and self.layout != "neuneu":
                raise ValueError(f"model.{flag}: {str(getattr(self, flag)).lower()} needs model.layout: neuneu")


def build_model(cfg: ModelConfig) -> nn.Module:
    return NeuneuTransformer(cfg) if cfg.layout == "neuneu" else RefLayoutTransformer(cfg)


class Ensemble(nn.Module):
    """Members trained from different seeds; the quantiles of each level are averaged
    (quantile averaging keeps them monotone). Same call signature as one network."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.cfg = members[0].cfg

    def forward(self, *args, **kwargs):
        return torch.stack([m(*args, **kwargs) for m in self.members]).mean(0)


def monotone_quantiles(raw: torch.Tensor) -> torch.Tensor:
    """(…, 5) unconstrained → (…, 5) non-decreasing: base + cumulative softplus increments."""
    return torch.cat([raw[..., :1], raw[..., :1] + torch.cumsum(Fn.softplus(raw[..., 1:]), -1)], -1)


def pinball_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean pinball loss: over quantile levels, over an episode's queries, then over episodes
    (every episode weighs the same, as in the MAE of DESIGN.md). pred (B, Q, 5), target (B, Q)."""
    taus = pred.new_tensor(QUANTILES)
    diff = torch.where(mask, target, 0.0).unsqueeze(-1) - pred  # (B, Q, 5)
    per_point = torch.maximum(taus * diff, (taus - 1) * diff).mean(-1)  # (B, Q)
    per_point = torch.where(mask, per_point, 0.0)
    n = mask.sum(1)
    per_episode = per_point.sum(1) / n.clamp(min=1)
    return per_episode[n > 0].mean()


class Block(nn.Module):
    """Pre-LN transformer block over the tokens [context ‖ queries] with the neuneu attention mask."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, h, n_context, key_bias, self_bias, queries_only=False):
        """h (B, T, D): the C = n_context context tokens, then the queries. key_bias (B, 1, 1, C):
        0 at real context keys, -inf at padding; self_bias (T, 1): -inf on context rows (their own
        key is a context key already), 0 on query rows. `queries_only` (the last block: nothing
        reads its context rows) returns the query rows (B, T - C, D) only: the attention runs over
        all T rows as in the other blocks (its small products round differently at other row
        counts), the projection and MLP, row by row, over the query rows alone. The same function;
        the last float32 bit can move where a pass has very few query rows (the matmul kernels
        depend on the row count), and in training the weight gradients sum over fewer rows.

        Every token attends to the context keys, and a query also to itself: a softmax over C + 1
        logits, the extra one per row, computed without the (T, T) matrix (a few context points
        against hundreds of queries). Two exact forms of it: under autograd (training) torch's
        softmax over the C + 1 logits, whose backward is fused; without (prediction) the self term
        merged into the context softmax by hand, one shared max for stability, which saves the
        (T, C + 1) copy (scripts/bench_predict.py about 1.25x faster; tests/test_model.py checks they agree)."""
        B, T, D = h.shape
        H = self.n_heads
        q, k, v = self.qkv(self.ln1(h)).view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)  # each (B, H, T, Dh)
        q = q * (1.0 / math.sqrt(D // H))
        kc, vc = k[:, :, :n_context], v[:, :, :n_context]
        s = torch.matmul(q, kc.transpose(-1, -2)).add_(key_bias)  # (B, H, T, C)
        s_self = (q * k).sum(-1, keepdim=True).add_(self_bias)  # (B, H, T, 1)
        if torch.is_grad_enabled():
            w = torch.softmax(torch.cat([s, s_self], -1), -1)
            a = w[..., :n_context] @ vc + w[..., n_context:] * v  # (B, H, T, Dh)
        else:  # in place: one (B, H, T, C) tensor at a time
            top = torch.maximum(s.amax(-1, keepdim=True), s_self)
            e, e_self = s.sub_(top).exp_(), s_self.sub_(top).exp_()
            a = (e @ vc).add_(e_self * v).div_(e.sum(-1, keepdim=True).add_(e_self))
        if queries_only:
            a, h, T = a[:, :, n_context:], h[:, n_context:], T - n_context  # (B, H, Q, Dh), (B, Q, D)
        h = h + self.drop(self.proj(a.transpose(1, 2).reshape(B, T, D)))
        return h + self.drop(self.mlp(self.ln2(h)))


class NeuneuTransformer(nn.Module):
    """neuneu layout: token MLP → pre-LN blocks → monotone quantile head at query tokens."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        columns = input_columns(cfg.loss_level, cfg.acc_level, law_features=cfg.law_features, own_run=cfg.own_run,
                                schedule_features=cfg.schedule_features, scale_features=cfg.scale_features)
        self.register_buffer("inputs", torch.tensor(columns), persistent=False)
        self.embed = nn.Sequential(nn.Linear(len(self.inputs), cfg.d_ff), nn.GELU(), nn.Linear(cfg.d_ff, cfg.d_model))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, len(QUANTILES))

    def forward(self, context, context_mask, query, query_mask, anchor=None):
        C = context.shape[1]
        h = self.embed(torch.cat([context, query], 1)[..., self.inputs])  # (B, C + Q, D)
        key_bias = torch.zeros(context_mask.shape, dtype=h.dtype, device=h.device)
        key_bias = key_bias.masked_fill_(~context_mask, float("-inf"))[:, None, None, :]  # (B, 1, 1, C)
        rows = torch.arange(h.shape[1], device=h.device)[:, None]
        self_bias = torch.zeros(rows.shape, dtype=h.dtype, device=h.device).masked_fill_(rows < C, float("-inf"))
        for block in self.blocks[:-1]:
            h = block(h, C, key_bias, self_bias)
        h = self.blocks[-1](h, C, key_bias, self_bias, queries_only=True) if len(self.blocks) else h[:, C:]
        return monotone_quantiles(self.head(self.ln_f(h)))  # (B, Q, 5)


class RefLayoutTransformer(nn.Module):
    """The published layout: one query per sequence, accuracy-only context, BOS readout."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        half = cfg.d_model // 2
        self.acc_embed = nn.Linear(1, half)
        self.gap_embed = nn.Linear(1, cfg.d_model - half)
        self.bos = nn.Parameter(torch.zeros(cfg.d_model))
        self.pos = nn.Parameter(torch.zeros(cfg.max_context + 1, cfg.d_model))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            cfg.d_model, cfg.n_heads, cfg.d_ff, cfg.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, len(QUANTILES))

    def forward(self, context, context_mask, query, query_mask, anchor):
        B, C, _ = context.shape
        Q = query.shape[1]
        if C > self.cfg.max_context:
            raise ValueError(f"context of {C} points exceeds model.max_context={self.cfg.max_context}")
        acc = context[..., F["acc"]] / 2.0 + 0.5  # raw accuracy back from the feature
        last = context_mask.long().cumsum(1).argmax(1)  # (B,) index of the last real context token
        # One sequence per (episode, query): (B*Q, C) accuracies and gaps.
        acc = acc[:, None, :].expand(B, Q, C).reshape(B * Q, C, 1)
        gap = torch.zeros(B, Q, C, device=context.device)
        gap[torch.arange(B)[:, None], torch.arange(Q)[None, :], last[:, None]] = query[..., F["gap"]]
        tokens = torch.cat([self.acc_embed(acc), self.gap_embed(gap.reshape(B * Q, C, 1))], -1)
        tokens = torch.cat([self.bos.expand(B * Q, 1, -1), tokens], 1) + self.pos[: C + 1]
        pad = torch.cat([torch.zeros(B, 1, dtype=torch.bool, device=context.device), ~context_mask], 1)
        pad = pad[:, None, :].expand(B, Q, C + 1).reshape(B * Q, C + 1)
        h = self.encoder(tokens, src_key_padding_mask=pad)
        accuracy = self.head(self.ln_f(h[:, 0])).view(B, Q, len(QUANTILES))
        # Raw accuracy quantiles → the shared target space (same pinball optimum, scaled).
        return (accuracy - anchor[:, None, None]) * ACC_SCALE
