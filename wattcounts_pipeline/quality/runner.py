"""Run lm-eval on the offline tasks and flatten its results into one row per (task, metric).

The rows join the energy measurements on (model, model_revision, quantization, framework), so quality
is always measured on the very weights and engine whose energy was measured.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattcounts_pipeline.core.errors import QualityError
from wattcounts_pipeline.core.stats import Z95
from wattcounts_pipeline.core.vocab import QUALITY_FRAMEWORKS
from wattcounts_pipeline.quality.tasks import build_task_manager, canonical_task_name, validate_task_data

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lm_eval.api.model import LM

logger = logging.getLogger(__name__)

QUALITY_ROW_KEYS = (
    "model",
    "model_revision",
    "quantization",
    "framework",
    "task",
    "task_version",
    "num_fewshot",
    "limit",
    "metric",
    "value",
    "stderr",
    "n_samples",
    "lm_eval_version",
    "evaluated_at",
    "source",
    "value_ci95_low",
    "value_ci95_high",
)
# Closed-form stderr covers mean metrics; perplexity-type metrics are bootstrapped, and lm-eval's
# default of 100k resamples costs minutes on a 2-core machine for no practical gain in precision.
BOOTSTRAP_ITERS = 1000
# One context length for every framework, so perplexity windows (and truncation) compare across them.
MAX_LENGTH = 2048


OFFLINE_ENV = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "DISABLE_MULTIPROC": "1"}


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """No Hub access while lm-eval runs: the tasks read local JSONL files and models are local paths. The
    variables are restored afterwards, so what the process runs next (a release pushed to the Hub, a `submit
    --to-hub` subprocess) is not left offline.

    lm-eval bootstraps perplexity stderrs in a forked multiprocessing pool unless DISABLE_MULTIPROC is set;
    forking a process that already runs threads (llama.cpp's, torch's, Dagster's) can deadlock the child,
    and did: a CI run hung 80 minutes there. 1000 resamples in one loop cost well under a second.
    """
    before = {name: os.environ.get(name) for name in OFFLINE_ENV}
    os.environ.update(OFFLINE_ENV)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _load_model(framework: str, model_path: Path, dtype: str) -> LM:
    """Build the lm-eval model for `framework` from a local GGUF file or HF folder."""
    if framework == "llamacpp":
        if model_path.suffix != ".gguf" or not model_path.is_file():
            raise QualityError(f"llamacpp quality evaluation needs a .gguf file, got {model_path}")
        from wattcounts_pipeline.quality.llamacpp_lm import LlamaCppLM

        return LlamaCppLM(model_path=model_path, n_ctx=MAX_LENGTH)
    if framework == "transformers":
        import torch
        from lm_eval.models.huggingface import HFLM

        from wattcounts_pipeline.backends.gguf_convert import checkpoint_from_gguf

        device = "cuda" if torch.cuda.is_available() else "cpu"
        if model_path.is_file() and model_path.suffix == ".gguf":
            # the GGUF's weights dequantized once into a cached checkpoint, the one the measurement loaded
            model_path = checkpoint_from_gguf(model_path)
        if model_path.is_dir():
            return HFLM(pretrained=str(model_path), dtype=dtype, device=device, batch_size=8, max_length=MAX_LENGTH)
        raise QualityError(f"transformers quality evaluation needs a .gguf file or a model folder, got {model_path}")
    raise QualityError(f"unsupported quality framework {framework!r}; supported: {', '.join(QUALITY_FRAMEWORKS)}")


def _none_if_missing(value: Any) -> float | None:
    """lm-eval reports an unknown stderr as "N/A" (or NaN); the rows say None."""
    if value is None or isinstance(value, str):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _metric_names(config: dict[str, Any]) -> dict[str, str]:
    """Filter name → suffix: the task's first filter gives the bare metric, others `metric_<filter>`.

    gsm8k scores each answer twice (strict "#### n" and flexible number extraction); the strict one
    is lm-eval's headline number, so it keeps the plain name `exact_match`.
    """
    filters = [entry["name"] for entry in config.get("filter_list") or []] or ["none"]
    return {name: "" if i == 0 else "_" + name.replace("-", "_") for i, name in enumerate(filters)}


def results_to_rows(
    results: dict[str, Any],
    *,
    model_name: str,
    model_revision: str,
    quantization: str,
    framework: str,
    limit: int | None,
    lm_eval_version: str,
    evaluated_at: str,
) -> list[dict[str, Any]]:
    """Flatten `simple_evaluate` output into rows with exactly QUALITY_ROW_KEYS."""
    rows: list[dict[str, Any]] = []
    for task, metrics in sorted(results["results"].items()):
        suffixes = _metric_names(results["configs"][task])
        for key, value in metrics.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, filter_name = key.split(",", 1)
            stderr = _none_if_missing(metrics.get(f"{metric}_stderr,{filter_name}"))
            rows.append(
                {
                    "model": model_name,
                    "model_revision": model_revision,
                    "quantization": quantization,
                    "framework": framework,
                    "task": task,
                    "task_version": str(results["versions"][task]),
                    "num_fewshot": int(results["n-shot"][task]),
                    "limit": limit,
                    "metric": metric + suffixes[filter_name],
                    "value": float(value),
                    "stderr": stderr,
                    "n_samples": int(results["n-samples"][task]["effective"]),
                    "lm_eval_version": lm_eval_version,
                    "evaluated_at": evaluated_at,
                    "source": "measured",
                    "value_ci95_low": None if stderr is None else float(value) - Z95 * stderr,
                    "value_ci95_high": None if stderr is None else float(value) + Z95 * stderr,
                }
            )
    return rows


def evaluate_quality(
    framework: str,
    model_path: Path,
    quantization: str,
    model_name: str,
    model_revision: str,
    tasks: Sequence[str],
    limit: int | None,
    num_fewshot: int,
    dtype: str = "auto",
    data_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Evaluate one model on the offline tasks; one row per (task, metric), all or nothing.

    `tasks` accept names with or without the `wc_` prefix. Task data is validated before the model
    loads, so a missing or malformed file fails fast with its path (and line). Any failure raises
    QualityError and returns no rows. `data_dir` replaces the shipped data folder (tests use it).
    """
    if framework not in QUALITY_FRAMEWORKS:
        raise QualityError(f"unsupported quality framework {framework!r}; supported: {', '.join(QUALITY_FRAMEWORKS)}")
    if not tasks:
        raise QualityError("no quality tasks requested")
    model_path = Path(model_path)
    if not model_path.exists():
        raise QualityError(f"model not found: {model_path}")
    names = list(dict.fromkeys(canonical_task_name(task) for task in tasks))
    validate_task_data(names, data_dir)
    with _offline():
        import lm_eval

        logger.info(
            "evaluating %s (%s, %s) on %s, limit=%s, %d-shot",
            model_name,
            framework,
            quantization,
            names,
            limit,
            num_fewshot,
        )
        try:
            task_manager = build_task_manager(data_dir)
            lm = _load_model(framework, model_path, dtype)
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=names,
                num_fewshot=num_fewshot,
                limit=limit,
                task_manager=task_manager,
                bootstrap_iters=BOOTSTRAP_ITERS,
                log_samples=False,
            )
            if results is None:
                raise QualityError(f"lm-eval returned no results for {model_name} on {names}")
            return results_to_rows(
                results,
                model_name=model_name,
                model_revision=model_revision,
                quantization=quantization,
                framework=framework,
                limit=limit,
                lm_eval_version=lm_eval.__version__,
                evaluated_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
        except QualityError:
            raise
        except Exception as exc:
            raise QualityError(f"lm-eval failed for {model_name} ({framework}) on {names}: {exc}") from exc


def item_results(results: dict[str, Any], rows: list[dict[str, Any]], tasks: tuple[str, ...]) -> dict[str, Any]:
    """Per task: each metric's value, stderr, item count and interval (from `rows`), and the per-item
    correctness (`correct`, "1"/"0" per item in doc_id order, with `doc_ids`) of a `simple_evaluate(...,
    log_samples=True)` run: what paired comparisons of two models on the same items need."""
    out: dict[str, Any] = {}
    for task in tasks:
        samples = sorted(results["samples"][task], key=lambda s: s["doc_id"])
        entry: dict[str, Any] = {row["metric"]: {k: row[k] for k in ("value", "stderr", "n_samples", "value_ci95_low",
                                                                       "value_ci95_high")}
                                 for row in rows if row["task"] == task}
        entry["correct"] = "".join(str(int(s["acc"])) for s in samples)
        entry["doc_ids"] = [int(s["doc_id"]) for s in samples]
        out[task] = entry
    return out

