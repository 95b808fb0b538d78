"""Serving scenarios measured the way they are served: request mixes, load (closed and open loop), saturation
sweeps, and one row per load point (energy per request and per output token, latency percentiles, SLO attainment).

One module per job: `spec` (the `serving:` section of an experiment file), `mixes` (request length lists),
`synthetic` (prompts of exact token lengths), `loadgen` (closed/open loop driver), `server_metrics` (the server's
own Prometheus gauges), `rows` (a load point's row), `servers` (starting and talking to the server), `sweep` (the
saturation sweep), `store` (rows on disk). Answers read off the measured curves are the recommender's:
model/curves.py.
"""
