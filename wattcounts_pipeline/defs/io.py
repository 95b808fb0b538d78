"""An IO manager that stores asset values as parquet tables (or JSON) under WATTCOUNTS_HOME.

Values are a DataFrame, a dict of DataFrames (one parquet per table), or a JSON-able dict. Each
write goes to a temporary folder renamed into place, so a killed run never leaves half a partition.
An unpartitioned asset reading a partitioned one gets the tables of every partition materialized so
far, concatenated: a failed partition is left out instead of failing everything after it.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from wattcounts_pipeline import paths

UNPARTITIONED = "__all__"


def write_value(folder: Path, value: Any) -> None:
    """Atomically replace `folder` with the stored form of `value`."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        if isinstance(value, pd.DataFrame):
            value.to_parquet(tmp / "_value.parquet", index=False)
        elif isinstance(value, dict) and value and all(isinstance(v, pd.DataFrame) for v in value.values()):
            for name, frame in value.items():
                frame.to_parquet(tmp / f"{name}.parquet", index=False)
        else:
            (tmp / "_value.json").write_text(json.dumps(value, indent=2, sort_keys=True, default=str))
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_value(folder: Path) -> Any:
    if (folder / "_value.parquet").exists():
        return pd.read_parquet(folder / "_value.parquet")
    if (folder / "_value.json").exists():
        return json.loads((folder / "_value.json").read_text())
    return {p.stem: pd.read_parquet(p) for p in sorted(folder.glob("*.parquet"))}


def concat_values(values: list[Any]) -> Any:
    """Merge the values of several partitions: frames concatenated table by table."""
    if not values:
        return {}
    if isinstance(values[0], pd.DataFrame):
        return pd.concat(values, ignore_index=True)
    names = sorted({name for v in values for name in v})
    return {n: pd.concat([v[n] for v in values if n in v and not v[n].empty] or [pd.DataFrame()],
                         ignore_index=True) for n in names}


class TableStoreIOManager(dg.ConfigurableIOManager):
    """Parquet/JSON store at `<base_dir>/<asset>/<partition>/`; base_dir defaults to WATTCOUNTS_HOME/assets."""

    base_dir: str = ""

    def _root(self) -> Path:
        return Path(self.base_dir) if self.base_dir else paths.subdir("assets")

    def _folder(self, asset_key: dg.AssetKey, partition: str | None) -> Path:
        return self._root() / "/".join(asset_key.path) / (partition or UNPARTITIONED)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        partition = context.partition_key if context.has_partition_key else None
        folder = self._folder(context.asset_key, partition)
        write_value(folder, obj)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(folder))})

    def load_input(self, context: dg.InputContext) -> Any:
        key = context.asset_key
        if context.has_asset_partitions:
            keys = context.asset_partition_keys
            if len(keys) == 1 and context.has_partition_key:
                return read_value(self._folder(key, keys[0]))
            present = [k for k in keys if self._folder(key, k).is_dir()]
            missing = sorted(set(keys) - set(present))
            if missing:
                context.log.warning(f"{'/'.join(key.path)}: {len(missing)} partition(s) not materialized, "
                                    f"left out: {missing}")
            return concat_values([read_value(self._folder(key, k)) for k in present])
        return read_value(self._folder(key, None))
