"""`import wattcounts`: the public API of Watt Counts (the package itself is `wattcounts_pipeline`).

`wattcounts.meter()` and `@wattcounts.measured` meter any block of code (see wattcounts_pipeline/meter.py).
"""

from wattcounts_pipeline import __version__
from wattcounts_pipeline.meter import Metered, measured, meter

__all__ = ["Metered", "__version__", "measured", "meter"]
