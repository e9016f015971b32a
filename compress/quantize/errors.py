"""The quantization's error (its own module, so every step can raise it without importing another)."""

from __future__ import annotations

from ..export.errors import ExportError


class QuantizeError(ExportError):
    """An INT8 quantization that cannot be done as asked: a bad calibration source, too few frames, an
    already-quantized input, an unknown method, a runtime without the kernels. A subclass of
    :class:`compress.export.ExportError`, so the CLI reports it like an export error (exit 2)."""
