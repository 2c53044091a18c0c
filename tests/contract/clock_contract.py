from __future__ import annotations

from cdc_domain.ports import Clock


class ClockContract:
    def test_is_a_clock(self, clock):
        assert isinstance(clock, Clock)

    def test_now_is_aware_utc(self, clock):
        now = clock.now()
        assert now.tzinfo is not None
        assert now.utcoffset().total_seconds() == 0

    def test_time_does_not_go_backwards(self, clock):
        assert clock.now() <= clock.now()
