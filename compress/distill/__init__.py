"""Distillation (work in progress): head-agnostic feature distillation from teacher taps."""

from .features import FeatureDistiller, FeatureTaps, TapMismatchError, standardize

__all__ = ["FeatureDistiller", "FeatureTaps", "TapMismatchError", "standardize"]
