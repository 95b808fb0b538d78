"""Offline lm-eval tasks: YAMLs shipped in `tasks/`, data shipped in `data/`.

The YAMLs name their data files relative to the data folder (`data_files: {test: arc_easy.jsonl}`),
because the package can be installed anywhere. `render_task_dir` writes copies whose `data_files`
are absolute paths, which is what lm-eval's `TaskManager(include_path=...)` and the `datasets` json
builder need; nothing ever touches the Hugging Face Hub.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from wattcounts_pipeline import paths
from wattcounts_pipeline.core.atomic import atomic_file
from wattcounts_pipeline.core.errors import QualityError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from lm_eval.tasks import TaskManager

logger = logging.getLogger(__name__)

TASKS_DIR = Path(__file__).resolve().parent / "tasks"
DATA_DIR = Path(__file__).resolve().parent / "data"
TASK_PREFIX = "wc_"


class _FunctionRef(str):
    """An lm-eval `!function` reference, kept verbatim through a load/dump round trip."""


class _Loader(yaml.SafeLoader):
    """Safe YAML loader that keeps `!function` tags instead of importing them."""


class _Dumper(yaml.SafeDumper):
    """Safe YAML dumper that writes `_FunctionRef` back as a `!function` tag."""


_Loader.add_constructor("!function", lambda loader, node: _FunctionRef(loader.construct_scalar(node)))
_Dumper.add_representer(_FunctionRef, lambda dumper, data: dumper.represent_scalar("!function", str(data)))


def task_names() -> list[str]:
    """Every shipped task, e.g. `wc_arc_easy`, from the YAML file names."""
    return sorted(path.stem for path in TASKS_DIR.glob(f"{TASK_PREFIX}*.yaml"))


def canonical_task_name(name: str) -> str:
    """Accept `arc_easy` or `wc_arc_easy` and return the shipped task name."""
    full = name if name.startswith(TASK_PREFIX) else f"{TASK_PREFIX}{name}"
    known = task_names()
    if full not in known:
        raise QualityError(f"unknown quality task {name!r}; known: {', '.join(known)}")
    return full


def load_task_config(name: str) -> dict[str, Any]:
    """The task's YAML as a dict (`!function` entries kept as strings)."""
    path = TASKS_DIR / f"{canonical_task_name(name)}.yaml"
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_Loader)


def data_files(name: str, data_dir: Path | None = None) -> dict[str, Path]:
    """Split name → absolute data file of a task, resolved against `data_dir` (default: shipped data)."""
    root = Path(data_dir) if data_dir is not None else DATA_DIR
    files = load_task_config(name)["dataset_kwargs"]["data_files"]
    return {split: (root / rel).resolve() for split, rel in files.items()}


def validate_data_file(path: Path) -> int:
    """Check a JSONL data file line by line before lm-eval sees it; return its record count.

    Every non-blank line must be a JSON object with the same keys as the first one, so a
    truncated or hand-edited file fails here with its line number rather than deep in `datasets`.
    """
    if not path.is_file():
        raise QualityError(f"quality data file is missing: {path}")
    keys: set[str] | None = None
    count = 0
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise QualityError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise QualityError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
            if keys is None:
                keys = set(record)
            elif set(record) != keys:
                raise QualityError(
                    f"{path}:{line_no}: fields {sorted(record)} differ from the first record's {sorted(keys)}"
                )
            count += 1
    if count == 0:
        raise QualityError(f"quality data file has no records: {path}")
    return count


def validate_task_data(names: Iterable[str], data_dir: Path | None = None) -> None:
    """Validate every data file of the given tasks; raise QualityError naming the first bad file."""
    for name in names:
        for path in data_files(name, data_dir).values():
            validate_data_file(path)


def render_task_dir(data_dir: Path | None = None, out_dir: Path | None = None) -> Path:
    """Write the task YAMLs with absolute `data_files` paths and return the folder.

    The default folder sits under WATTCOUNTS_HOME and is named by a hash of the YAMLs and the data
    folder, so concurrent runs share it safely (each file is written atomically) and an edited YAML
    or a different data folder gets a fresh one.
    """
    root = (Path(data_dir) if data_dir is not None else DATA_DIR).resolve()
    rendered: dict[str, str] = {}
    for name in task_names():
        config = load_task_config(name)
        config["dataset_kwargs"]["data_files"] = {split: str(path) for split, path in data_files(name, root).items()}
        rendered[f"{name}.yaml"] = yaml.dump(config, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
    if out_dir is None:
        digest = hashlib.sha256(json.dumps(rendered, sort_keys=True).encode()).hexdigest()[:16]
        out_dir = paths.subdir("cache", "quality_tasks", digest)
    out_dir.mkdir(parents=True, exist_ok=True)
    for file_name, text in rendered.items():
        with atomic_file(out_dir / file_name) as tmp:
            tmp.write_text(text, encoding="utf-8")
    logger.debug("rendered %d quality task YAMLs into %s", len(rendered), out_dir)
    return out_dir


def build_task_manager(data_dir: Path | None = None) -> TaskManager:
    """An lm-eval TaskManager that knows only the Watt Counts tasks (lm-eval's Hub tasks left out)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(render_task_dir(data_dir)), include_defaults=False)
