"""The network as a bundle holds it: detections decoded in the graph, segmentation logits.

Output ``det`` is (B, N, 5+nc) with cx, cy, w, h in network-input pixels, objectness and class
probabilities (sigmoid applied); ``drivable`` and ``lane`` are (B, 1, H, W) logits (> 0 means p > 0.5).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models import decode_detections

INPUT_NAME = "images"
OUTPUT_NAMES = ("det", "drivable", "lane")


class ExportWrapper(nn.Module):
    """MultiTaskNet -> (decoded detections, drivable logits, lane logits)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(x)
        det = self.model.detect
        return decode_detections(out.det, det.anchors, det.strides), out.drivable, out.lane
