"""FP8 (e4m3) weights and activations for transformers linears, on Hopper's FP8 tensor cores.

The scheme vLLM calls dynamic `fp8`: weights quantized once per output channel, activations per token at
run time, one `torch._scaled_mm` per linear. Needs no wheel beyond torch, so it runs on the lent GPU;
`lm_head` and fused MoE experts stay in the compute dtype, as in vLLM.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8_DTYPE).max)


def quantize_rowwise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`x` (rows × K) as FP8 plus one float32 scale per row, so that x ≈ q * scale."""
    scale = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12) / FP8_MAX
    q = (x / scale.to(x.dtype)).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return q, scale


class Fp8Linear(nn.Module):
    """A drop-in for nn.Linear holding an FP8 weight (out × in) and per-channel scales (1 × out)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight, scale = quantize_rowwise(linear.weight.detach())
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.weight_scale = nn.Parameter(scale.t().contiguous(), requires_grad=False)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        q, scale = quantize_rowwise(rows)
        out = torch._scaled_mm(q, self.weight.t(), scale_a=scale, scale_b=self.weight_scale, out_dtype=x.dtype)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def quantize_model_fp8(model: Any, skip: tuple[str, ...] = ("lm_head",)) -> int:
    """Replace every nn.Linear of `model` (except names ending in `skip`) by an Fp8Linear; returns how many.

    Linears whose in/out features are not multiples of 16 (a `_scaled_mm` requirement) are left as they are.
    """
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and not name.endswith(skip)
               and module.in_features % 16 == 0 and module.out_features % 16 == 0]
    for name, module in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Fp8Linear(module))
    return len(targets)
