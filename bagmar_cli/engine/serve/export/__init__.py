"""Export a checkpoint for serving, and run exports back.

options (what `bagmar export` was asked for), serving (the exported module with the post-hoc bakers),
formats (ONNX, TorchScript, bundle: suffix, writer and loader), sidecar (the JSON schema), runner (running a
module or session on batches), loaded (any model file loaded to run, as predict uses it), check (the parity
check), write (export_model: write, check, publish).
"""

from bagmar_cli.engine.serve.export.options import ExportOptions
from bagmar_cli.engine.serve.export.write import export_model

__all__ = ["ExportOptions", "export_model"]
