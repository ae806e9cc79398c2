"""Shipping models: TF Serving SavedModels that take raw text, versioned and atomic, with warmup requests."""

from tfx_transfer.export.serving import export_for_serving, export_multitask_for_serving, write_warmup_requests
from tfx_transfer.export.versioning import existing_versions, new_version_directory

__all__ = ["export_for_serving", "export_multitask_for_serving", "write_warmup_requests", "existing_versions", "new_version_directory"]
