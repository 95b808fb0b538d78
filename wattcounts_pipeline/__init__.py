"""Watt Counts: energy, speed and quality of LLM inference, measured, published and predicted."""

__version__ = "0.1.0"
