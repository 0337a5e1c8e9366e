"""Pure rules of a clinic's policy: quiet hours, the rota, slots, and the policy file."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from aftercare.policies import PolicyBook, PolicyError
from workflows.policy import QuietHours, Rota, Shift, Target

NY = "America/New_York"


def at(day: int, hour: int, minute: int = 0, zone: str = NY) -> datetime:
    """A local time on 2026-11-16 (a Monday) + ``day`` days."""
    return datetime(2026, 11, 16 + day, hour, minute, tzinfo=ZoneInfo(zone))


@pytest.mark.parametrize(("local", "ends"), [
    (at(0, 22), at(1, 8)),        # evening: ends next morning
    (at(1, 3), at(1, 8)),         # small hours: ends this morning
    (at(1, 7, 59), at(1, 8)),
    (at(1, 8), None),             # the first minute after quiet hours
    (at(1, 12), None),
])
def test_overnight_quiet_hours_end_in_the_clients_morning(local, ends):
    quiet = QuietHours(start=time(21), end=time(8))
    utc = local.astimezone(ZoneInfo("UTC"))
    assert quiet.end_after(utc, NY) == ends


def test_quiet_hours_follow_the_clients_zone_not_the_servers():
    quiet = QuietHours(start=time(21), end=time(8))
    noon_in_new_york = at(1, 12)
    assert quiet.end_after(noon_in_new_york, NY) is None
    assert quiet.end_after(noon_in_new_york, "Asia/Tokyo") is not None  # 02:00 in Tokyo


def test_rota_finds_day_and_overnight_shifts_and_backup():
    rota = Rota(
        on_call=[Shift(staff_id="day", days=[0, 1, 2, 3, 4], start=time(8), end=time(20)),
                 Shift(staff_id="night", days=[0, 1, 2, 3, 4], start=time(20), end=time(8))],
        backup=[Shift(staff_id="lead")],
    )
    assert rota.staff_for(Target.ON_CALL, at(0, 9), NY) == "day"
    assert rota.staff_for(Target.ON_CALL, at(0, 23), NY) == "night"
    assert rota.staff_for(Target.ON_CALL, at(1, 2), NY) == "night", "Monday's night shift"
    assert rota.staff_for(Target.ON_CALL, at(5, 12), NY) is None, "nobody on Saturday"
    assert rota.staff_for(Target.BACKUP, at(5, 12), NY) == "lead"


def test_example_policy_file_loads_and_clinics_inherit_the_default():
    book = PolicyBook.load(Path("policies.example.yaml"))
    demo = book.for_clinic("demo")
    assert demo.checkin_delay.moderate == timedelta(seconds=5)
    assert demo.crisis_line_for("es").startswith("Si estas en crisis")
    riverside = book.for_clinic("clinic-42")
    assert riverside.escalation.ack_timeout == timedelta(minutes=10), "from the default"
    unknown = book.for_clinic("clinic-new")
    assert unknown.clinic_id == "clinic-new" and unknown.staff == {}


def test_policy_error_names_the_clinic_and_the_field():
    with pytest.raises(PolicyError, match=r"demo\.checkin_delay\.low"):
        PolicyBook({"default": {}, "demo": {"checkin_delay": {"low": "soon", "moderate": "PT1M",
                                                              "high": "PT1M"}}})
    with pytest.raises(PolicyError, match="t-99"):
        PolicyBook({"default": {}, "x": {"rota": {"on_call": [{"staff_id": "t-99"}]}}})


def test_slots_are_computed_in_the_clinics_zone():
    from workflows.policy import RescheduleOptions, SlotRule

    options = RescheduleOptions(slots=[SlotRule(after=timedelta(days=1), at=time(10))])
    (slot,) = options.slot_times(at(0, 23), NY)
    assert slot == at(1, 10)


def test_a_follow_up_carries_only_the_clients_and_the_clinics_language():
    policy = PolicyBook.load(Path("policies.example.yaml")).for_clinic("demo")
    spanish = policy.for_client("es-MX")
    assert set(spanish.templates) == set(spanish.crisis_words) == {"es", "en"}
    english = policy.for_client("en")
    assert set(english.templates) == set(english.crisis_line) == {"en"}
    assert policy.for_client("fr").language("fr") == "en", "unknown languages fall back"


@pytest.mark.parametrize(("url", "problem"), [
    ("https://10.0.0.5/book", "10.0.0.5 is a loopback or private address"),
    ("https://169.254.169.254/latest/meta-data", "169.254.169.254 is a loopback or private"),
    ("https://[fd00::1]/book", "fd00::1 is a loopback or private address"),
    ("http://localhost:8030/book", "localhost is a loopback or private address"),
    ("http://clinic.example/book", "must use https"),
    ("file:///etc/passwd", "must be an absolute https:// URL"),
    ("clinic.example/book", "must be an absolute https:// URL"),
])
def test_an_internal_or_plain_http_booking_webhook_is_refused_at_load(url, problem):
    with pytest.raises(PolicyError) as refused:
        PolicyBook({"default": {}, "riverside": {"reschedule": {"webhook_url": url}}})

    assert str(refused.value).startswith(
        f"policy file: riverside.reschedule.webhook_url: {problem}")


def test_a_public_https_or_an_allowed_loopback_booking_webhook_loads():
    book = PolicyBook({"default": {}, "riverside": {"reschedule": {
        "webhook_url": "https://riverside.example/aftercare/booking"}}, "dev": {"reschedule": {
        "webhook_url": "http://127.0.0.1:8030/clinics/dev/bookings",
        "webhook_private_network": True}}})

    assert book.for_clinic("dev").reschedule.webhook_private_network
    with pytest.raises(PolicyError, match="must use https"):
        PolicyBook({"default": {}, "lan": {"reschedule": {
            "webhook_url": "http://10.1.2.3/book", "webhook_private_network": True}}})
