"""The export's error (its own module, so every step of the export can raise it without importing another step)."""


class ExportError(RuntimeError):
    """An export that failed a check (parity, ONNX checker, TensorRT build)."""
