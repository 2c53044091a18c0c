"""The collector's streaming settings, checked in a process of their own: freezing and
new thresholds last for the life of the process they are set in."""

import subprocess
import sys

import pytest

from cdc_app.garbage_collection import STREAMING_THRESHOLDS

pytestmark = pytest.mark.timeout(60)

PROBE = """
import gc
from cdc_app.garbage_collection import tune_for_streaming
before = gc.get_freeze_count()
tune_for_streaming()
print(gc.get_threshold(), before, gc.get_freeze_count() > 0)
"""


def test_streaming_raises_the_thresholds_and_freezes_what_start_up_built() -> None:
    answer = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=50, check=True
    )
    assert answer.stdout.split("\n")[0] == f"{STREAMING_THRESHOLDS} 0 True"
