"""Workloads: turn a Workload spec into exact prompts for a backend's tokenizer."""
