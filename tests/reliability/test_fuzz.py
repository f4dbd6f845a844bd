"""A short run of the fuzz harness (scripts/fuzz.py) over the three parsers a user's files reach,
and the inputs its long runs found, kept as regressions. RESTORE_FUZZ_SECONDS sets the budget per
target (default 3 s; docs/RELIABILITY.md gives the figures of the 5-minute runs)."""
import importlib.util
import io
import json
import os
import struct
from pathlib import Path

import pytest

from restore.runtime.image_header import read_image_size

_spec = importlib.util.spec_from_file_location("restore_fuzz", Path(__file__).parents[2] / "scripts" / "fuzz.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

SECONDS = float(os.environ.get("RESTORE_FUZZ_SECONDS", 3))


@pytest.mark.parametrize("target", list(fuzz.TARGETS))
def test_fuzz_smoke(target):
    if target == "checkpoint":
        pytest.importorskip("torch")
    result = fuzz.fuzz(target, SECONDS, chunk=20, log=lambda message: None)
    assert result["executions"] > 0
    assert result["crashes"] == [], json.dumps(result["crashes"], indent=2)


@pytest.mark.parametrize("data", [
    b"RIFF\x00\x00\x00\x00WEBPVP8L",  # IndexError: a VP8L chunk cut before its signature byte
    b"II+\x00\x08\x00\x00\x00" + struct.pack("<Q", 2**63 + 5) + bytes(16),  # OverflowError: BigTIFF offset past any file
    b"BM" + bytes(12) + struct.pack("<Iii", 40, -2147483635, 9) + bytes(6),  # a negative BMP width taken as a size
])
def test_headers_found_by_fuzzing(data):
    assert read_image_size(io.BytesIO(data)) is None

