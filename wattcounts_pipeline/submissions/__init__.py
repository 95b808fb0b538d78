"""Community submissions: bundle format (`manifest`, `bundle`), local checks and packing (`pack`), limits on
what an archive may hold (`archive`), and safe ingestion into the store (`store`).

Plain library code (no Dagster): `wattcounts_pipeline.defs.submissions` builds the sensor and asset on it.
Import from the submodules: this file imports nothing, so `wattcounts` starts without pandas or Pandera.
"""
