"""Quality evaluation: lm-eval on offline task data, with a fast in-process llama.cpp model."""

from __future__ import annotations

from wattcounts_pipeline.quality.runner import QUALITY_ROW_KEYS, evaluate_quality
from wattcounts_pipeline.quality.tasks import build_task_manager, canonical_task_name, render_task_dir, task_names

__all__ = [
    "QUALITY_ROW_KEYS",
    "build_task_manager",
    "canonical_task_name",
    "evaluate_quality",
    "render_task_dir",
    "task_names",
]
