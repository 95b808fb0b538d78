"""Measurement orchestration: one spec (`run`), many resumably (`sweep`), and how sweep folders are stored
(`store`). The only part that imports both meters and backends; `cli` adds `wattcounts sweep` and `pack`."""
