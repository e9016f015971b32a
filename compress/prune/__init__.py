"""Task-aware safe structured pruning on torch-pruning's dependency graph."""

from .allocate import ALLOCATIONS, AllocationError
from .budget import QUANTITIES, BudgetError, Quantity, budget_names, latency_meter, relative_latency
from .budget import register as register_quantity
from .config import PruneConfig
from .importance import CRITERIA, Criterion, TaskAwareImportance, build_criterion, register
from .latency import LatencyError, LatencyMeter
from .pruner import PruneReport, prune, ratio_for_budget
from .spec import SpecError, TaskSpec, spec_for

__all__ = [
    "ALLOCATIONS",
    "AllocationError",
    "CRITERIA",
    "Criterion",
    "TaskAwareImportance",
    "build_criterion",
    "register",
    "QUANTITIES",
    "Quantity",
    "budget_names",
    "register_quantity",
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
