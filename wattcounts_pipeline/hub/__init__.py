"""Dataset releases (parquet + card + schemas) and their publishing to a local git repository or the Hub."""

from wattcounts_pipeline.hub.publish import PublishResult, publish_hub, publish_local
from wattcounts_pipeline.hub.release import build_release

__all__ = ["PublishResult", "build_release", "publish_hub", "publish_local"]
