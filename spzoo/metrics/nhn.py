"""The NHN performance score: see `spzoo.nhn.score` (kept for this import path)."""

from spzoo.nhn.score import nhn_score

__all__ = ["nhn_score"]
