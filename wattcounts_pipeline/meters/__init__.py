"""Energy meters: NVML (GPU), RAPL (CPU/DRAM), estimate (fallback) and replay (recorded traces)."""

from wattcounts_pipeline.meters.base import EnergyMeter, EnergyReading, PowerSample

__all__ = ["EnergyMeter", "EnergyReading", "PowerSample"]
