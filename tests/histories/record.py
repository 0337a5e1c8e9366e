"""Re-records the saved histories from real follow-ups, after a deliberate change to the
workflow (see README.md beside this file):

    .venv/bin/python -m tests.histories.record
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.fixtures.followups import closed_followup

HISTORIES = Path(__file__).parent


async def test_record_a_follow_up_the_client_answers_ok(followups):
    handle = await closed_followup(followups)
    history = await handle.fetch_history()
    (HISTORIES / "followup-client-answers-ok.json").write_text(history.to_json() + "\n")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
