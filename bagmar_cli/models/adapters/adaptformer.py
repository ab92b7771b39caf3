"""AdaptFormer (Chen et al., NeurIPS 2022) as LIFT uses it (Shi et al., ICML 2024, models/peft_modules.py).

Beside each block's MLP runs a bottleneck MLP on the block's residual stream x, the input of the norm before the
MLP, so the MLP branch becomes

    mlp(norm(x)) + s * W_up ReLU(W_down LN(x) + b_down) + s * b_up

with its own LayerNorm LN, a learned scalar s (LIFT's starts at 1; AdaptFormer's paper fixes 0.1) and W_up, b_up
zero-initialised, so the adapted backbone starts equal to the base one. The block's norm moves inside the wrapper
(its own slot becomes an Identity), which keeps the block's forward as timm wrote it. The adapter stays a small
module of its own: nothing merges it into the linears.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NORMS_BEFORE_MLP = ("norm2", "norm")  # timm's name of the norm that feeds `mlp`: ViT-style blocks, ConvNeXt


class AdaptFormer(nn.Module):
    """The bottleneck: s * up(ReLU(down(LN(x)))), up-projection zero-initialised."""

    def __init__(self, dim: int, bottleneck: int, scale: float = 1.0) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(dim)
        self.down_proj = nn.Linear(dim, bottleneck)
        self.up_proj = nn.Linear(bottleneck, dim)
        self.scale = nn.Parameter(torch.tensor([float(scale)]))
        nn.init.kaiming_normal_(self.down_proj.weight, a=math.sqrt(5))  # LIFT's initialisation
        nn.init.zeros_(self.down_proj.bias)
        nn.init.zeros_(self.up_proj.weight)
        nn.init.zeros_(self.up_proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.up_proj(torch.relu(self.down_proj(self.ln(x)))) * self.scale
        return out


class MlpWithAdapter(nn.Module):
    """A block's norm and MLP with the AdaptFormer beside them: mlp(norm(x)) + adaptformer(x)."""

    def __init__(self, norm: nn.Module, mlp: nn.Module, adaptformer: AdaptFormer) -> None:
        super().__init__()
        self.norm = norm
        self.mlp = mlp
        self.adaptformer = adaptformer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.mlp(self.norm(x)) + self.adaptformer(x)
        return out


def add_adaptformer(backbone: nn.Module, bottleneck: int, scale: float) -> int:
    """Put an AdaptFormer beside the MLP of every block of `backbone` whose MLP reads token or channels-last
    features through an nn.Linear `fc1` after a norm named in NORMS_BEFORE_MLP; returns how many were added."""
    added = 0
    for block in list(backbone.modules()):
        fc1 = getattr(getattr(block, "mlp", None), "fc1", None)
        norm_name = next((name for name in NORMS_BEFORE_MLP if isinstance(getattr(block, name, None), nn.Module)), None)
        if not isinstance(fc1, nn.Linear) or norm_name is None:
            continue
        norm, mlp = getattr(block, norm_name), block.get_submodule("mlp")
        block.mlp = MlpWithAdapter(norm, mlp, AdaptFormer(fc1.in_features, bottleneck, scale))
        setattr(block, norm_name, nn.Identity())
        added += 1
    return added


def count_mlp_blocks(backbone: nn.Module) -> int:
    """Blocks with an MLP of nn.Linear layers (`mlp.fc1`): the L of LIFT's default bottleneck width."""
    return sum(isinstance(getattr(getattr(m, "mlp", None), "fc1", None), nn.Linear) for m in backbone.modules())
