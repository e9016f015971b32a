"""Multi-task losses, returned per task.

Detection follows YOLOv5/YOLOP: targets are assigned to the anchors whose shape ratio is within
``anchor_t`` and to the two neighbouring grid cells nearest the centre; box loss is 1 - CIoU,
objectness is BCE against the (detached, clamped) IoU, class is BCE. Segmentation is BCE +
Dice on the single-channel logits of each head. Pruning and distillation need each task's loss
on its own, so :meth:`MultiTaskLoss.__call__` returns them separately together with the weighted
total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .config_io import FieldError
from .models.yolop import Outputs


@dataclass(frozen=True)
class LossConfig:
    box: float = 0.05
    obj: float = 1.0
    cls: float = 0.5
    anchor_t: float = 4.0
    balance: tuple[float, float, float] = (4.0, 1.0, 0.4)
    seg_bce: float = 1.0
    seg_dice: float = 1.0
    lane_pos_weight: float = 2.0  # lane pixels are rare: up-weight positives in BCE
    # per-task weights of the total
    w_det: float = 1.0
    w_drivable: float = 0.5
    w_lane: float = 0.5

    def __post_init__(self) -> None:
        for name in ("box", "obj", "cls", "seg_bce", "seg_dice", "lane_pos_weight", "w_det", "w_drivable", "w_lane"):
            if getattr(self, name) < 0:
                raise FieldError(name, f"a loss weight must be >= 0 (0: off), got {getattr(self, name)}")
        if self.anchor_t <= 1:
            raise FieldError("anchor_t", f"the anchor-match ratio must be > 1 (YOLOv5: 4.0), got {self.anchor_t}")
        if len(self.balance) != 3 or min(self.balance) < 0:
            raise FieldError("balance", f"expected 3 objectness weights >= 0 (P3, P4, P5), got {self.balance}")


def bbox_ciou(b1: torch.Tensor, b2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU between matching rows of two (N, 4) xywh box sets."""
    (x1, y1, w1, h1), (x2, y2, w2, h2) = b1.unbind(-1), b2.unbind(-1)
    b1x1, b1x2, b1y1, b1y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    b2x1, b2x2, b2y1, b2y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    inter = (torch.min(b1x2, b2x2) - torch.max(b1x1, b2x1)).clamp(0) * (
        torch.min(b1y2, b2y2) - torch.max(b1y1, b2y1)
    ).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.max(b1x2, b2x2) - torch.min(b1x1, b2x1)
    ch = torch.max(b1y2, b2y2) - torch.min(b1y1, b2y1)
    c2 = cw**2 + ch**2 + eps
    rho2 = (x2 - x1) ** 2 + (y2 - y1) ** 2
    v = (4 / math.pi**2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    p = logits.sigmoid().flatten(1)
    t = target.flatten(1)
    inter = (p * t).sum(1)
    return (1 - (2 * inter + eps) / (p.sum(1) + t.sum(1) + eps)).mean()


def _has_mask(batch: dict, task: str) -> torch.Tensor | None:
    """Per-image flags from the loader's meta (datasets without masks for a task); None = all."""
    metas = batch.get("meta")
    if not metas:
        return None
    flags = [bool(m.get(f"has_{task}", True)) for m in metas]
    return None if all(flags) else torch.tensor(flags)


class MultiTaskLoss:
    """Per-task losses of a :class:`~compress.models.yolop.MultiTaskNet`."""

    def __init__(
        self, anchors: torch.Tensor, strides: torch.Tensor, num_classes: int, cfg: LossConfig | None = None
    ) -> None:
        self.cfg = cfg or LossConfig()
        self.anchors = anchors  # (nl, na, 2) pixels
        self.strides = strides  # (nl,)
        self.nc = num_classes

    @classmethod
    def for_model(cls, model: nn.Module, cfg: LossConfig | None = None) -> MultiTaskLoss:
        det = model.detect
        return cls(det.anchors, det.strides, det.nc, cfg)

    def __call__(self, out: Outputs, batch: dict) -> dict[str, torch.Tensor]:
        """Return {'det', 'drivable', 'lane', 'total'} plus detection components."""
        c = self.cfg
        det = self.detection(out.det, batch["boxes"].to(out.det[0].device))
        drv_t = batch["drivable"].to(out.drivable.device, torch.float32).unsqueeze(1)
        lane_t = batch["lane"].to(out.lane.device, torch.float32).unsqueeze(1)
        drv = self.segmentation(out.drivable, drv_t, 1.0, _has_mask(batch, "drivable"))
        lane = self.segmentation(out.lane, lane_t, c.lane_pos_weight, _has_mask(batch, "lane"))
        total = c.w_det * det["det"] + c.w_drivable * drv + c.w_lane * lane
        return {**det, "drivable": drv, "lane": lane, "total": total}

    def segmentation(
        self, logits: torch.Tensor, target: torch.Tensor, pos_weight: float, valid: torch.Tensor | None = None
    ) -> torch.Tensor:
        """BCE + Dice over the images that carry this mask (``valid``; None = all)."""
        logits = logits.float()
        if valid is not None:
            if not bool(valid.any()):
                return logits.sum() * 0.0  # no image of the batch has this task's label
            valid = valid.to(logits.device)
            logits, target = logits[valid], target[valid]
        pw = torch.tensor(pos_weight, device=logits.device)
        bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)
        return self.cfg.seg_bce * bce + self.cfg.seg_dice * dice_loss(logits, target)

    def detection(self, preds: list[torch.Tensor], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.cfg
        dev = preds[0].device
        lbox = torch.zeros((), device=dev)
        lobj = torch.zeros((), device=dev)
        lcls = torch.zeros((), device=dev)
        img_h = preds[0].shape[2] * self.strides[0].item()
        img_w = preds[0].shape[3] * self.strides[0].item()
        # objectness / box gains scale with image size and number of layers like YOLOv5
        nl = len(preds)
        obj_gain = c.obj * ((img_h * img_w) / (640 * 640)) * 3 / nl
        for i, p in enumerate(preds):
            p = p.float()
            tobj = torch.zeros(p.shape[:4], device=dev)
            b, a, gj, gi, tbox, tcls, anch = self._assign(p, targets, i)
            n = b.shape[0]
            if n:
                ps = p[b, a, gj, gi]
                pxy = ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anch
                iou = bbox_ciou(torch.cat((pxy, pwh), 1), tbox)
                lbox = lbox + (1.0 - iou).mean()
                tobj[b, a, gj, gi] = iou.detach().clamp(0).to(tobj.dtype)
                if self.nc > 1:
                    t = torch.zeros_like(ps[:, 5:])
                    t[torch.arange(n, device=dev), tcls] = 1.0
                    lcls = lcls + F.binary_cross_entropy_with_logits(ps[:, 5:], t)
            lobj = lobj + F.binary_cross_entropy_with_logits(p[..., 4], tobj) * c.balance[i]
        lbox = lbox * c.box * 3 / nl
        lobj = lobj * obj_gain
        lcls = lcls * c.cls * (self.nc / 80) * 3 / nl
        return {"det": lbox + lobj + lcls, "det_box": lbox.detach(), "det_obj": lobj.detach(), "det_cls": lcls.detach()}

    def _assign(self, p: torch.Tensor, targets: torch.Tensor, i: int):
        """YOLOv5 target assignment for layer i. targets: (M, 6) [b, cls, x1, y1, x2, y2] pixels."""
        dev = p.device
        stride = self.strides[i].item()
        anchors = (self.anchors[i] / stride).to(dev)  # grid units
        ny, nx = p.shape[2], p.shape[3]
        if targets.numel() == 0:
            e = torch.zeros(0, dtype=torch.long, device=dev)
            return e, e, e, e, torch.zeros(0, 4, device=dev), e, torch.zeros(0, 2, device=dev)
        xyxy = targets[:, 2:6] / stride
        gxy = (xyxy[:, :2] + xyxy[:, 2:]) / 2
        gwh = (xyxy[:, 2:] - xyxy[:, :2]).clamp(min=1e-3)
        # anchor matching by shape ratio
        r = gwh[None] / anchors[:, None]  # (na, M, 2)
        ok = torch.max(r, 1 / r).max(2).values < self.cfg.anchor_t  # (na, M)
        ai, ti = ok.nonzero(as_tuple=True)
        gxy_m, gwh_m = gxy[ti], gwh[ti]
        # the cell holding the centre plus the two nearest neighbours (YOLOv5 g = 0.5)
        g = 0.5
        off = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], device=dev, dtype=torch.float32) * g
        gxi = torch.tensor([nx, ny], device=dev) - gxy_m
        j, k = ((gxy_m % 1 < g) & (gxy_m > 1)).T
        l_, m = ((gxi % 1 < g) & (gxi > 1)).T
        sel = torch.stack((torch.ones_like(j), j, k, l_, m))  # (5, K)
        rep = sel.nonzero(as_tuple=True)
        idx = rep[1]
        offsets = off[rep[0]]
        gxy_r = gxy_m[idx]
        gij = (gxy_r - offsets).long()
        gi = gij[:, 0].clamp(0, nx - 1)
        gj = gij[:, 1].clamp(0, ny - 1)
        tsel = ti[idx]
        b = targets[tsel, 0].long()
        cls = targets[tsel, 1].long()
        a = ai[idx]
        tbox = torch.cat((gxy_r - torch.stack((gi, gj), 1).float(), gwh_m[idx]), 1)
        return b, a, gj, gi, tbox, cls, anchors[a]
