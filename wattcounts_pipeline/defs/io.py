"""An IO manager that stores asset values as parquet tables (or JSON) under WATTCOUNTS_HOME.

Values are a DataFrame, a dict of DataFrames (one parquet per table), or a JSON-able dict. Each
write goes to a temporary folder renamed into place, so a killed run never leaves half a partition.
An unpartitioned asset reading a partitioned one gets the tables of every partition materialized so
far, concatenated: a failed partition is left out instead of failing everything after it.

A partitioned asset run for many partitions at once (single-run backfill policy) returns `ByPartition`, one value
per partition key, stored partition by partition; an input marked `BY_PARTITION` loads the same way.

The store's root may be an fsspec URL (`s3://bucket/wattcounts`, `gs://…`, `file:///shared/…`) that every
host of a fleet writes to and the aggregate stage reads from. Object stores have no atomic rename, so there a
partition counts as written only once its `_complete.json` (the list of its files) is written, last.
"""

import io
import json
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from upath import UPath

from wattcounts_pipeline import paths
from wattcounts_pipeline.core import atomic

UNPARTITIONED = "__all__"
COMPLETE = "_complete.json"  # written last in a URL store: a partition without it is absent
BY_PARTITION = {"by_partition": True}  # AssetIn metadata: load {partition key: value}, never concatenated


class ByPartition(dict[str, Any]):
    """The value of each partition of one step (a run may cover hundreds): stored one folder per key."""


def write_value(folder: Path, value: Any) -> None:
    """Atomically replace `folder` with the stored form of `value`."""
    tmp = atomic.staging_folder(folder.parent, folder.name)
    try:
        if isinstance(value, pd.DataFrame):
            value.to_parquet(tmp / "_value.parquet", index=False)
        elif isinstance(value, dict) and value and all(isinstance(v, pd.DataFrame) for v in value.values()):
            for name, frame in value.items():
                frame.to_parquet(tmp / f"{name}.parquet", index=False)
        else:
            (tmp / "_value.json").write_text(json.dumps(value, indent=2, sort_keys=True, default=str))
        atomic.replace_folder(tmp, folder)
    except BaseException:
        atomic.remove_tree(tmp)
        raise


def read_value(folder: Path) -> Any:
    if (folder / "_value.parquet").exists():
        return pd.read_parquet(folder / "_value.parquet")
    if (folder / "_value.json").exists():
        return json.loads((folder / "_value.json").read_text())
    return {p.stem: pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))}


def _encode(value: Any) -> dict[str, bytes]:
    """The files that store `value`, by name (same layout as `write_value`)."""
    def parquet(frame: pd.DataFrame) -> bytes:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()

    if isinstance(value, pd.DataFrame):
        return {"_value.parquet": parquet(value)}
    if isinstance(value, dict) and value and all(isinstance(v, pd.DataFrame) for v in value.values()):
        return {f"{name}.parquet": parquet(frame) for name, frame in value.items()}
    return {"_value.json": json.dumps(value, indent=2, sort_keys=True, default=str).encode()}


def write_url_value(folder: UPath, value: Any) -> None:
    """Replace `folder` in a URL store: hide it (drop the marker), write the files, then the marker."""
    files = _encode(value)
    marker = folder / COMPLETE
    if marker.exists():
        marker.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    for old in list(folder.iterdir()):
        if old.name not in files:
            old.unlink()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    marker.write_text(json.dumps(sorted(files)))


def read_url_value(folder: UPath) -> Any:
    names = json.loads((folder / COMPLETE).read_text())
    if names == ["_value.json"]:
        return json.loads((folder / "_value.json").read_text())
    frames = {Path(n).stem: pd.read_parquet(io.BytesIO((folder / n).read_bytes())) for n in names}
    return frames["_value"] if list(frames) == ["_value"] else frames


def is_tables(value: Any) -> bool:
    """A frame or a dict of frames: what can be concatenated across partitions."""
    return isinstance(value, pd.DataFrame) or (
        isinstance(value, dict) and all(isinstance(v, pd.DataFrame) for v in value.values()))


def concat_values(values: list[Any]) -> Any:
    """Merge the values of several partitions: frames concatenated table by table."""
    if not values:
        return {}
    if isinstance(values[0], pd.DataFrame):
        return pd.concat(values, ignore_index=True)
    names = sorted({name for v in values for name in v})
    return {n: pd.concat([v[n] for v in values if n in v and not v[n].empty] or [pd.DataFrame()],
                         ignore_index=True) for n in names}


def store_folder(*parts: str, base_dir: str = "") -> Path | UPath:
    """A folder of the shared store (paths.store_root): what one host writes there, every host of a fleet reads."""
    return paths.store_root(base_dir).joinpath(*parts)


def write_stored(folder: Path | UPath, value: Any) -> None:
    """Replace `folder` of the store with `value`: an atomic rename on a local disk, a completion marker in a URL store."""
    if isinstance(folder, UPath):
        write_url_value(folder, value)
    else:
        write_value(folder, value)


def read_stored(folder: Path | UPath) -> Any:
    return read_url_value(folder) if isinstance(folder, UPath) else read_value(folder)


def is_stored(folder: Path | UPath) -> bool:
    """Whether `folder` holds a complete value (a URL store counts a folder only once its marker is written)."""
    return (folder / COMPLETE).exists() if isinstance(folder, UPath) else folder.is_dir()


class TableStoreIOManager(dg.ConfigurableIOManager):
    """Parquet/JSON store at `<root>/<asset>/<partition>/`. root: `base_dir`, else $WATTCOUNTS_STORE (a folder
    or an fsspec URL every host of a fleet shares), else WATTCOUNTS_HOME/assets."""

    base_dir: str = ""

    def _folder(self, asset_key: dg.AssetKey, partition: str | None) -> Path | UPath:
        return store_folder(*asset_key.path, partition or UNPARTITIONED, base_dir=self.base_dir)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        if isinstance(obj, ByPartition):
            for key, value in obj.items():
                write_stored(self._folder(context.asset_key, key), value)
            return
        partition = context.partition_key if context.has_partition_key else None
        folder = self._folder(context.asset_key, partition)
        write_stored(folder, obj)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(folder))})

    def load_input(self, context: dg.InputContext) -> Any:
        key = context.asset_key
        if context.has_asset_partitions:
            keys = context.asset_partition_keys
            if context.definition_metadata.get("by_partition"):
                return ByPartition({k: read_stored(self._folder(key, k)) for k in keys})
            if len(keys) == 1 and context.has_partition_key:
                return read_stored(self._folder(key, keys[0]))
            present = [k for k in keys if is_stored(self._folder(key, k))]
            missing = sorted(set(keys) - set(present))
            if missing:
                context.log.warning(f"{'/'.join(key.path)}: {len(missing)} partition(s) not materialized, "
                                    f"left out: {missing}")
            values = {k: read_stored(self._folder(key, k)) for k in present}
            untabled = sorted(k for k, v in values.items() if not is_tables(v))
            if untabled:  # a value an older version stored (a summary, not rows): materialize it again
                context.log.warning(f"{'/'.join(key.path)}: {len(untabled)} partition(s) hold no tables, left out "
                                    f"until materialized again: {untabled}")
            return concat_values([v for k, v in values.items() if k not in untabled])
        return read_stored(self._folder(key, None))
