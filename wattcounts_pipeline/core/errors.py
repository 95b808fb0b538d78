"""One error hierarchy, so callers can tell a bad input from a broken run."""

from __future__ import annotations


class WattCountsError(Exception):
    """Base of every error raised on purpose by Watt Counts."""


class SpecError(WattCountsError):
    """An experiment file or spec is malformed; the message names the file and the field."""


class BackendError(WattCountsError):
    """An inference backend could not load or run a model."""


class MeterError(WattCountsError):
    """An energy meter is absent, unreadable or failed mid-window."""


class ContractError(WattCountsError):
    """A table contract under schemas/ is malformed, or a frame breaks it."""


class QualityError(WattCountsError):
    """Quality evaluation could not run (missing or malformed task data, unsupported backend)."""


class ReleaseError(WattCountsError):
    """A dataset release could not be built or published."""


class SubmissionError(WattCountsError):
    """A contributed bundle is unsafe or invalid."""


class RecordedDataError(WattCountsError):
    """A recorded sweep folder (data/measurements/) holds a file that cannot be read or packed; names the file."""
