"""Energy accounting after a window: per-request attribution of a power trace and the prefill/decode split.

Plain numbers in, plain values out: tested without hardware, used by the measure stage and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class Attribution:
    """Energy per request (input order) and the energy of moments when no request was active."""

    per_request_j: tuple[float, ...]
    unattributed_j: float


def attribute_energy(requests: Sequence[tuple[float, float]], power_w: float | ArrayLike,
                     t_s: ArrayLike | None = None,
                     window_s: tuple[float, float] | None = None) -> Attribution:
    """Split energy among overlapping requests: at each instant the power is shared equally by the active ones.

    `power_w` is a constant mean power, or a trace sampled at `t_s` (piecewise linear, held beyond its ends).
    `window_s` (default: first start to last end) bounds the energy considered; requests are clipped to it.
    """
    if not requests:
        raise ValueError("no requests to attribute energy to")
    starts = np.array([float(s) for s, _ in requests])
    ends = np.array([float(e) for _, e in requests])
    if np.any(ends < starts):
        raise ValueError("a request ends before it starts")
    w0, w1 = window_s if window_s is not None else (float(starts.min()), float(ends.max()))
    starts, ends = np.clip(starts, w0, w1), np.clip(ends, w0, w1)
    constant_w = float(power_w) if isinstance(power_w, (int, float)) else None
    times = np.asarray([] if constant_w is not None or t_s is None else t_s, dtype=float)
    powers = np.asarray([] if constant_w is not None else power_w, dtype=float)
    if constant_w is None and (times.size == 0 or times.shape != powers.shape):
        raise ValueError("a power trace needs t_s of the same, non-zero length")
    bounds = np.unique(np.concatenate(([w0, w1], starts, ends, times[(times > w0) & (times < w1)])))
    values = np.full(bounds.shape, constant_w) if constant_w is not None else np.interp(bounds, times, powers)
    segment_j = (values[1:] + values[:-1]) * 0.5 * np.diff(bounds)
    # Active requests per segment: +1 at each start's boundary index, -1 at each end's.
    change = np.zeros(bounds.size)
    np.add.at(change, np.searchsorted(bounds, starts), 1)
    np.add.at(change, np.searchsorted(bounds, ends), -1)
    active = np.cumsum(change)[:-1]
    share_j = np.where(active > 0, segment_j / np.maximum(active, 1), 0.0)
    cumulative_j = np.concatenate(([0.0], np.cumsum(share_j)))
    per_request = cumulative_j[np.searchsorted(bounds, ends)] - cumulative_j[np.searchsorted(bounds, starts)]
    return Attribution(per_request_j=tuple(float(x) for x in per_request),
                       unattributed_j=float(segment_j[active <= 0].sum()))


@dataclass(frozen=True)
class PrefillDecodeSplit:
    """Energy of prefill, of decode, and decode energy per generated token (after the first)."""

    prefill_energy_j: float
    decode_energy_j: float
    decode_tokens: int
    decode_energy_j_per_token: float


def split_prefill_decode(full_energy_j: float, full_output_tokens: int, prefill_energy_j: float,
                         prefill_output_tokens: int) -> PrefillDecodeSplit:
    """Separate prefill from decode with a prefill-only run (one output token per request) beside a full run.

    Both runs take the same prompts; token counts are totals over all requests. The prefill-only run's
    energy is the prefill's; the rest of the full run's energy decoded the remaining tokens.
    """
    decode_tokens = full_output_tokens - prefill_output_tokens
    if decode_tokens <= 0:
        raise ValueError(f"the full run ({full_output_tokens} tokens) must output more than the prefill-only run "
                         f"({prefill_output_tokens})")
    decode_energy_j = full_energy_j - prefill_energy_j
    if decode_energy_j < 0:
        raise ValueError(f"the prefill-only run used more energy ({prefill_energy_j:.3f} J) than the full run "
                         f"({full_energy_j:.3f} J): the windows are too short or too noisy to separate")
    return PrefillDecodeSplit(prefill_energy_j=prefill_energy_j, decode_energy_j=decode_energy_j,
                              decode_tokens=decode_tokens, decode_energy_j_per_token=decode_energy_j / decode_tokens)
