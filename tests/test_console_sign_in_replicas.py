"""Sign-in as seen from outside two API processes sharing one audit database (SQLite, then
PostgreSQL): the limit holds however concurrent tries interleave, and a code request
answers in the same time for any staff id (measured from another process, so the
server's work after the response is not the client's to wait for)."""

from __future__ import annotations

import asyncio
import statistics
import time

import httpx

from api.console.signin import (
    CODE_SENT,
    CODE_WRONG,
    CODES_PER_WINDOW,
    SIGNED_IN,
    TRIES_PER_CODE,
)
from tests.fixtures.api import until
from tests.fixtures.console import CSRF_FIELD, FRONT_DESK, ConsoleReplicas, newest_texted_code
from tests.followup_harness import ON_CALL_PHONE

WRONG_TRIES = 100


async def test_a_hundred_wrong_codes_and_the_right_one_at_once_through_two_processes_sign_nobody_in(
    console_replicas: ConsoleReplicas,
) -> None:
    url_a, url_b = console_replicas.urls
    actor = f"staff:{console_replicas.clinic}/t-oncall"
    async with httpx.AsyncClient(timeout=60) as browser:
        form = await browser.get(f"{url_a}/console/sign-in")
        csrf = CSRF_FIELD.search(form.text).group(1)
        await browser.post(f"{url_a}/console/sign-in", data={
            "clinic": console_replicas.clinic, "staff_id": "t-oncall", "csrf_token": csrf})
        cookies = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())

    async def code_sent() -> bool:
        return any(r.action == CODE_SENT and r.actor == actor
                   for r in await console_replicas.store.access_records())

    code = await until(lambda: newest_texted_code(console_replicas.sms, ON_CALL_PHONE),
                       "a code texted to t-oncall")
    await until(code_sent, "the code recorded as sent")
    wrong = [f"{(int(code) + i) % 1_000_000:06d}" for i in range(1, WRONG_TRIES + 1)]

    # Every try on its own connection, all in flight at once, half to each process; the
    # right code goes out last, as it did when 109 wrong ones got in before it.
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as storm:
        def attempt(url: str, guess: str) -> asyncio.Future[httpx.Response]:
            return asyncio.ensure_future(storm.post(
                f"{url}/console/sign-in/code", data={"code": guess, "csrf_token": csrf},
                headers={"Cookie": cookies}))

        tries = [attempt((url_a, url_b)[i % 2], guess) for i, guess in enumerate(wrong)]
        right = attempt(url_b, code)
        answers = await asyncio.gather(*tries, right)
        again = await storm.post(f"{url_a}/console/sign-in/code",
                                 data={"code": code, "csrf_token": csrf},
                                 headers={"Cookie": cookies})

    assert right.result().status_code == 401 and again.status_code == 401
    assert {answer.status_code for answer in answers} == {401}
    assert not any("aftercare_staff=" in cookie for answer in answers
                   for cookie in answer.headers.get_list("set-cookie"))
    actions = [r.action for r in await console_replicas.store.access_records()
               if r.actor == actor]
    assert actions.count(CODE_WRONG) == TRIES_PER_CODE
    assert SIGNED_IN not in actions



async def test_a_code_request_for_an_unknown_id_answers_in_the_time_a_known_one_does(
    console_replicas: ConsoleReplicas,
) -> None:
    url = console_replicas.urls[0]
    async with httpx.AsyncClient(base_url=url, timeout=30) as browser:
        token = CSRF_FIELD.search((await browser.get("/console/sign-in")).text).group(1)

        async def answer_time(staff_id: str) -> float:
            started = time.perf_counter()
            answer = await browser.post("/console/sign-in", data={
                "clinic": console_replicas.clinic, "staff_id": staff_id, "csrf_token": token})
            took = time.perf_counter() - started
            assert answer.status_code == 303
            return took

        # Each request for a known id sends a code: the work an answer once waited for.
        known, unknown = [], []
        for round_ in range(CODES_PER_WINDOW * len(FRONT_DESK)):
            known.append(await answer_time(f"desk-{round_ % len(FRONT_DESK)}"))
            unknown.append(await answer_time(f"nobody-{round_}"))

    async def all_sent() -> bool:
        # The PostgreSQL database is the session's: count this test's clinic only.
        ours = f"staff:{console_replicas.clinic}/"
        return len([r for r in await console_replicas.store.access_records()
                    if r.action == CODE_SENT and r.actor.startswith(ours)]) == len(known)

    await until(all_sent, "a code sent for each known id's request")
    ratio = statistics.median(known) / statistics.median(unknown)
    assert ratio < 2, f"a known id answers {ratio:.1f} times slower than an unknown one"
