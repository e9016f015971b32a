"""Models users already have, brought into the pipeline as mtc checkpoints."""

from .yolop import YolopImportError, export_state_dict, import_state_dict, import_yolop, read_state_dict

__all__ = ["YolopImportError", "export_state_dict", "import_state_dict", "import_yolop", "read_state_dict"]
