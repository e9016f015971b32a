"""Task-aware safe structured pruning on torch-pruning's dependency graph (work in progress)."""

from .allocate import ALLOCATIONS, AllocationError
from .importance import CRITERIA, Criterion, TaskAwareImportance, build_criterion, register
from .pruner import BudgetError, PruneConfig, PruneReport, prune, ratio_for_budget
from .spec import SpecError, TaskSpec, spec_for

__all__ = [
    "ALLOCATIONS", "AllocationError", "CRITERIA", "Criterion", "TaskAwareImportance", "build_criterion", "register", "BudgetError", "PruneConfig",
    "PruneReport", "prune", "ratio_for_budget", "SpecError", "TaskSpec", "spec_for",
]
