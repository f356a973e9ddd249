"""A latent discriminator built from the teacher UNet's encoder, conditioned on the timestep and the text.

SCott's adversarial term (arXiv 2403.01505) judges noised latents with a discriminator initialised
from the teacher and trained only in small parts (LoRA) plus a head, as UFOGen/LADD do. Here:

- frozen: a copy of the teacher's conv_in, time embedding, down blocks and mid block (the encoder);
- trained: LoRA (rank r) on every attention q/k/v/out projection of that encoder, and one small head
  per encoder stage (conv 3x3 -> GroupNorm -> SiLU -> conv 1x1 -> one logit per position), averaged
  over positions and summed over stages, so coarse and fine features both vote.

The paper places LoRA in the UNet decoder (~3.6% of parameters); the encoder + head keeps the
discriminator at about half the UNet's cost per call, and `trainable_share()` reports what is trained.
"""

from __future__ import annotations

import copy
import math

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from scott.distill.lora import inject_lora


class _Head(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.GroupNorm(math.gcd(32, hidden), hidden),
            nn.SiLU(),
            nn.Conv2d(hidden, 1, 1),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).mean(dim=(1, 2, 3))


class UNetEncoderDiscriminator(nn.Module):
    """D(z_t, t, c) -> (B,) logits; see the module docstring for what is frozen and what is trained."""

    def __init__(self, teacher: UNet2DConditionModel, lora_rank: int = 4, head_channels: int = 128) -> None:
        super().__init__()
        source = copy.deepcopy(teacher).to(torch.float32)
        self.conv_in = source.conv_in
        self.time_proj = source.time_proj
        self.time_embedding = source.time_embedding
        # A teacher that adds pooled text to its time embedding (addition_embed_type "text") reads the caption in
        # every ResNet block through it; D keeps that path, or it would judge with a weaker text condition.
        addition = source.config.addition_embed_type
        if addition not in (None, "text"):
            raise ValueError(f"discriminator: addition_embed_type {addition!r} is not supported (None or 'text')")
        self.add_embedding = source.add_embedding if addition == "text" else None
        self.down_blocks = source.down_blocks
        self.mid_block = source.mid_block
        self.requires_grad_(False)
        self.num_lora = inject_lora(self, lora_rank) if lora_rank > 0 else 0
        channels = list(source.config.block_out_channels)
        self.heads = nn.ModuleList([_Head(c, head_channels) for c in [*channels, channels[-1]]])

    def forward(self, z: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        dtype = self.conv_in.weight.dtype
        emb = self.time_embedding(self.time_proj(t).to(dtype))  # no guidance condition: D judges images
        text = text.to(dtype)
        if self.add_embedding is not None:
            emb = emb + self.add_embedding(text)
        h = self.conv_in(z.to(dtype))
        features = []
        for block in self.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, _ = block(hidden_states=h, temb=emb, encoder_hidden_states=text)
            else:
                h, _ = block(hidden_states=h, temb=emb)
            features.append(h)
        if self.mid_block is not None:
            h = self.mid_block(h, emb, encoder_hidden_states=text)
        features.append(h)
        return torch.stack([head(f.float()) for head, f in zip(self.heads, features, strict=True)]).sum(0)

    def trainable_share(self) -> tuple[int, int]:
        """(trainable parameters, all parameters)."""
        params = list(self.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
