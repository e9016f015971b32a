"""Task-aware safe structured pruning on torch-pruning's dependency graph."""

from .allocate import ALLOCATIONS, AllocationError
from .importance import CRITERIA, Criterion, TaskAwareImportance, build_criterion, register
from .latency import LatencyError, LatencyMeter
from .pruner import BudgetError, PruneConfig, PruneReport, latency_meter, prune, ratio_for_budget, relative_latency
from .spec import SpecError, TaskSpec, spec_for

__all__ = [
    "ALLOCATIONS",
    "AllocationError",
    "CRITERIA",
    "Criterion",
    "TaskAwareImportance",
    "build_criterion",
    "register",
    "BudgetError",
    "PruneConfig",
    "PruneReport",
    "prune",
    "ratio_for_budget",
    "relative_latency",
    "LatencyError",
    "LatencyMeter",
    "latency_meter",
    "SpecError",
    "TaskSpec",
    "spec_for",
]
