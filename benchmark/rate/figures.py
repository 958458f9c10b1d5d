"""Everything one ``--rate`` run measured; ``rate.json`` is its JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmark.figures import LevelResult
from benchmark.rate.lag import LagReport
from benchmark.rate.sampling import Sample
from benchmark.rate.wait import WaitOutcome

__all__ = ["RateRun"]


@dataclass(frozen=True)
class RateRun:
    """Everything one ``--rate`` run measured; ``rate.json`` is its JSON form."""

    started: str
    command: str
    url: str
    database: str
    rate: int
    connections: int
    duration: float
    slow_max: float
    load_seconds: float
    result: LevelResult
    samples: list[Sample]
    wait: WaitOutcome | None
    lag: LagReport | None
    wal: str | None
    # Seconds from the end of the load to the start of the wait (the nothing-lost count).
    wait_offset: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def processed_after_load(self) -> float | None:
        """Seconds from the end of the load to the last slow-step result (all processed)."""
        if self.lag is None or self.lag.last_processed is None:
            return None
        return max(0.0, self.lag.last_processed - self.load_seconds)

    @property
    def confirmed_after_load(self) -> float | None:
        """
        Seconds from the end of the load to the database count that found no unprocessed user:
        an upper bound of when the last ``processed: true`` was written (None: never found).
        """
        if self.wait is None or not self.wait.processed:
            return None
        return self.wait.seconds + self.wait_offset
