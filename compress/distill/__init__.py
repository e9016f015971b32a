"""Distillation: head-agnostic feature distillation, adaptive multi-teacher weighting, output-level and
knowledge-trajectory terms (their use in a training step: :mod:`compress.distill.student`)."""

from .adaptive import output_distill_loss, task_gaps, teacher_weights
from .features import FeatureDistiller, FeatureTaps, TapMismatchError, Teacher, feature_loss, standardize

__all__ = [
    "FeatureDistiller",
    "FeatureTaps",
    "TapMismatchError",
    "Teacher",
    "feature_loss",
    "standardize",
    "output_distill_loss",
    "task_gaps",
    "teacher_weights",
]
