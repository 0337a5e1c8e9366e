"""A worker caches many follow-ups of few clinics: each clinic's policy is held once for all
of them, not once per follow-up, and nothing a follow-up does can change it for another."""

from __future__ import annotations

import gc
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from pydantic import ValidationError

from tests.followup_harness import FollowUpHarness, make_event
from workflows.policy import ClinicPolicy, one_copy

FOLLOWUPS = 5


def policies_named(clinic_name: str) -> set[int]:
    gc.collect()
    return {id(o) for o in gc.get_objects()
            if isinstance(o, ClinicPolicy) and o.clinic_name == clinic_name}


async def test_cached_follow_ups_of_one_clinic_share_one_copy_of_its_policy(
    followups: FollowUpHarness,
):
    # A name no other test's policy has: runs of earlier tests that the garbage collector
    # has not finalized yet hold policies of the same clinic, and are not counted.
    name = f"Shared Clinic {uuid.uuid4().hex[:8]}"
    handles = [await followups.start(make_event(), listen_after_close="PT1H", clinic_name=name)
               for _ in range(FOLLOWUPS)]
    for handle in handles:
        await followups.until_step(handle, "checkin_scheduled")
    gc.collect()

    held = policies_named(name)
    # The shared copy, and at most the last one the test's starter built and the client sent.
    assert 1 <= len(held) <= 2, f"{len(held)} copies of the policy for {FOLLOWUPS} follow-ups"


def test_a_shared_policy_cannot_be_changed_and_a_different_one_is_not_shared():
    policy = ClinicPolicy(clinic_id="clinic-a")
    same = ClinicPolicy.model_validate_json(policy.model_dump_json())
    other = ClinicPolicy(clinic_id="clinic-a", clinic_name="Another name")
    assert one_copy(policy) is one_copy(same)
    assert one_copy(other) is not one_copy(policy)
    with pytest.raises(ValidationError, match="frozen"):
        one_copy(policy).clinic_name = "changed"
    with pytest.raises(ValidationError, match="frozen"):
        one_copy(policy).templates["en"].checkin = "changed"


def test_runs_starting_at_once_on_the_worker_threads_still_share_one_copy():
    """The worker runs workflow tasks on several threads: follow-ups of one clinic starting
    in the same instant must not each keep a copy of their own."""
    rounds, threads = 200, 8
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for round_ in range(rounds):
            document = ClinicPolicy(clinic_id=f"clinic-{round_}").model_dump_json()
            decoded = [ClinicPolicy.model_validate_json(document) for _ in range(threads)]
            with ThreadPoolExecutor(threads) as pool:
                shared = {id(copy) for copy in pool.map(one_copy, decoded)}
            assert len(shared) == 1, f"round {round_}: {len(shared)} copies kept"
    finally:
        sys.setswitchinterval(switch_interval)
