"""Logs are JSON and carry no phone number, email or name, whoever logged them."""

from __future__ import annotations

import json
import logging

from aftercare.logs import configure_logging, get_logger


def test_phone_numbers_emails_and_names_are_redacted_from_every_log(capsys):
    configure_logging("INFO")
    get_logger("test").info("texted +15555550123", first_name="Dana",
                            detail={"email": "dana@example.org", "workflow_id": "followup-x-1"})
    logging.getLogger("some.library").warning("550 rejected <dana@example.org> (555) 555-0123")

    lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    text = json.dumps(lines)
    for personal in ("+15555550123", "Dana", "dana@example.org", "555-0123"):
        assert personal not in text
    assert lines[0]["event"] == "texted [phone]"
    assert lines[0]["detail"]["workflow_id"] == "followup-x-1", "ids are kept"
    assert lines[0]["timestamp"].startswith("20"), "timestamps are not mistaken for numbers"
    assert "[email]" in lines[1]["event"] and "[phone]" in lines[1]["event"]
