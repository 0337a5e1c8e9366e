"""One benchmark: every figure of Aftercare beside a bare-Temporal arm of the same shape,
on the same dev server, in the same run, and the ratio.

    .venv/bin/python bench/run.py [--full] [--profile FILE]

Starts its own Temporal dev server (in memory), the loopback sinks, an Aftercare worker
(``worker.py``), a bare worker (``bench/bare.py``) and the HTTP API (``starter.py serve``)
as processes, and measures, each beside bare:

- the happy path: throughput, worker CPU per follow-up (the worker process's own CPU
  time), latency; its history's events, bytes and Temporal Cloud actions;
- the same history figures for the no-reply escalation and for imminent risk;
- imminent risk, POST /v1/departures to the on-call's page accepted by the SMS outbox, at
  20 departures a second (the bare workflow is started by a client at the same rate and
  its first act is the page activity);
- a timer storm: N check-ins due in the same second (200 by default, 1,000 with --full),
  and with --full (or --contended) the same storm again while another process keeps one
  core busy;
- with --full (or --failover): a crisis text the moment the worker holding its follow-up
  is killed, with a second worker up;
- the clinic board over 1,000 open follow-ups, workers up, every worker stopped, and
  Temporal unreachable;
- with --full: 10,000 open follow-ups left on their check-in timers, each arm on a fresh
  server: start rate, worker and server memory.

The audit store is SQLite in the worker's process, the embedded default; with --postgres
it is a fresh database on this machine's PostgreSQL, as deployed, and the happy path also
shows the database server's own CPU.

The default run takes about two minutes; --full about fifteen. The machine may be shared:
read the ratios of one run, and the load average printed beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _paths  # noqa: F401  (the repository root first)
import httpx
from bare import BareCheckIn, BareCrisisReply, BareEscalation
from board import NOWHERE, board_loads, seed
from history import HistoryCost, history_cost, mean_cost
from stack import (
    ALARM,
    BARE_QUEUE,
    CHECKIN_DELAY_STORM_SECONDS,
    ON_CALL,
    ON_CALL_PHONE,
    OPEN,
    STORM,
    Stack,
    bench_stack,
    cpu_seconds,
    load_average,
    rss_mb,
)
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from throughput import PHONES, AftercareArm, Arrivals, BareArm, Round, departure, run_round

from aftercare.followups import actions
from aftercare.followups.start import start_followup
from aftercare.trail.store import AuditStore
from tests.fault_stack import stop_group
from tests.fixtures.databases import fresh_postgres_database
from workflows.followup import DepartureFollowUp
from workflows.models import Acknowledge, ClientReply, ResolutionOutcome, Resolve

ROUNDS = 2
PATH_SAMPLES = 3  # follow-ups per arm whose histories are measured on the escalation paths


@dataclass
class Row:
    figure: str
    aftercare: float | None
    bare: float | None
    goal: str = ""
    # Whether the goal is met, from (aftercare, bare); None where there is no goal.
    check: Callable[[float | None, float | None], bool | None] | None = None

    def cells(self) -> list[str]:
        ratio = (f"{self.aftercare / self.bare:.2f}"
                 if self.aftercare is not None and self.bare else "")
        met = self.check(self.aftercare, self.bare) if self.check else None
        return [self.figure, fmt(self.aftercare), fmt(self.bare), ratio, self.goal,
                {True: "yes", False: "NO", None: ""}[met]]


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.2f}" if abs(value) < 10 \
        else f"{value:.1f}"


def ratio_at_most(bound: float) -> Callable[[float | None, float | None], bool | None]:
    return lambda a, b: None if a is None or not b else a / b <= bound


def ratio_at_least(bound: float) -> Callable[[float | None, float | None], bool | None]:
    return lambda a, b: None if a is None or not b else a / b >= bound


def at_most(bound: float) -> Callable[[float | None, float | None], bool | None]:
    return lambda a, _b: None if a is None else a <= bound


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *rows: Row) -> None:
        self.rows.extend(rows)

    def print(self) -> None:
        header = ["figure", "aftercare", "bare", "ratio", "goal", "met"]
        table = [header, *(row.cells() for row in self.rows)]
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        for number, line in enumerate(table):
            print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                            for i, (cell, w) in enumerate(zip(line, widths, strict=True))))
            if number == 0:
                print("  ".join("-" * w for w in widths))
        for note in self.notes:
            print(note)


def say(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')} load {load_average()}] {text}", file=sys.stderr,
          flush=True)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def gathered(count: int, concurrency: int, one: Callable[[int], Awaitable[Any]]) -> list:
    gate = asyncio.Semaphore(concurrency)

    async def gated(index: int) -> Any:
        async with gate:
            return await one(index)

    return await asyncio.gather(*(gated(i) for i in range(count)))


def history_rows(path: str, aftercare: list[HistoryCost], bare: list[HistoryCost],
                 report: Report, goals: bool = False) -> None:
    a, b = mean_cost(aftercare), mean_cost(bare)
    report.add(
        Row(f"{path}: history events", a.events, b.events,
            "≤ 1.5× bare" if goals else "", check=ratio_at_most(1.5) if goals else None),
        Row(f"{path}: history KB", a.bytes / 1024, b.bytes / 1024,
            "≤ 2× bare" if goals else "", check=ratio_at_most(2.0) if goals else None),
        Row(f"{path}: Cloud actions", a.total_actions, b.total_actions))
    report.notes.append(f"  {path} actions, aftercare: {dict(sorted(a.actions.items()))}")
    report.notes.append(f"  {path} actions, bare:      {dict(sorted(b.actions.items()))}")


# ---------------------------------------------------------------- the happy path


async def happy(stack: Stack, report: Report, followups: int, concurrency: int,
                profile: Path | None) -> None:
    arrivals = Arrivals(stack.outbox.messages, lambda sms: sms.to)
    arms = [AftercareArm(stack), BareArm(stack)]
    rounds: list[Round] = []
    for arm in arms:  # warm-up: imports, caches and connections, not measured
        await run_round(arm, arrivals, 2, 2, stack.database_server)
    for number in range(ROUNDS):
        for arm in arms:
            profiler = (start_profiler(arm.pid, profile)
                        if profile and number == 0 and arm.name == "aftercare" else None)
            rounds.append(await run_round(arm, arrivals, followups, concurrency,
                                          stack.database_server))
            if profiler is not None:
                stop_profiler(profiler, profile)
            say(f"happy path, {arm.name}: {rounds[-1].per_second:.1f} follow-ups/s")

    def of(arm: str) -> list[Round]:
        return [r for r in rounds if r.arm == arm]

    def rate(arm: str) -> float:
        return sum(len(r.latencies) for r in of(arm)) / sum(r.seconds for r in of(arm))

    def cpu(arm: str) -> float:
        return statistics.mean(r.worker_cpu_ms_each for r in of(arm))

    def latency(arm: str, share: float) -> float:
        return percentile([x for r in of(arm) for x in r.latencies], share)

    def database_cpu(arm: str) -> float:
        return statistics.mean(r.database_cpu_ms_each or 0.0 for r in of(arm))

    report.add(
        Row("happy path: follow-ups/s", rate("aftercare"), rate("bare"), "≥ 0.8 of bare",
            check=ratio_at_least(0.8)),
        Row("happy path: worker CPU ms/follow-up", cpu("aftercare"), cpu("bare"),
            "≤ 1.5× bare", check=ratio_at_most(1.5)),
        *([Row("happy path: database server CPU ms/follow-up", database_cpu("aftercare"),
               database_cpu("bare"))] if stack.database_server else []),
        Row("happy path: latency p50 s", latency("aftercare", 0.5), latency("bare", 0.5)),
        Row("happy path: latency p95 s", latency("aftercare", 0.95), latency("bare", 0.95)))
    report.notes.append(
        f"  happy path: {ROUNDS} rounds of {followups} per arm, {concurrency} in flight; "
        "per round (aftercare, bare, ...): " + ", ".join(
            f"{r.per_second:.1f}/s {r.worker_cpu_ms_each:.0f} ms" for r in rounds))
    history_rows("happy path", [c for r in of("aftercare") for c in r.costs],
                 [c for r in of("bare") for c in r.costs], report, goals=True)


def start_profiler(pid: int, output: Path) -> subprocess.Popen | None:
    """py-spy, when installed (it is not a dependency), sampling the Aftercare worker's
    Python while it holds the GIL: its CPU, not its waits (SQLite's commits would fill a
    wall-clock profile)."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        say("--profile: py-spy is not installed in this environment; no profile")
        return None
    return subprocess.Popen([str(py_spy), "record", "--pid", str(pid), "--format", "raw",
                             "--gil", "--rate", "200", "--output", str(output.with_suffix(".raw"))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(profiler: subprocess.Popen, output: Path) -> None:
    profiler.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
    profiler.wait(timeout=60)
    raw = output.with_suffix(".raw")
    if raw.exists():
        output.write_text(summarise_profile(raw.read_text()))
        say(f"profile of the Aftercare worker written to {output}")


def summarise_profile(raw: str, top: int = 40) -> str:
    """Collapsed stacks to the frames with the most samples: inclusive and own."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    lines = [f"{total} samples", "", "inclusive (the frame or what it called):"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common(top)]
    lines += ["", "own time:"]
    lines += [f"{100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- escalation paths


async def until(check: Callable[[], Awaitable[Any]], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := await check()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
    return found


async def escalation_code(store: AuditStore, workflow_id: str) -> str | None:
    stored = await store.view(workflow_id)
    escalation = stored and stored.view.escalation
    return escalation.code if escalation else None


async def aftercare_escalated(stack: Stack, store: AuditStore, risk: str) -> HistoryCost:
    """A follow-up that escalates (no reply, or imminent at once), acknowledged and resolved."""
    started = await start_followup(stack.client, stack.settings, stack.policies,
                                   departure(next(PHONES), ALARM, risk))
    handle = stack.client.get_workflow_handle(started.workflow_id)
    await until(lambda: escalation_code(store, handle.id), 60, f"{handle.id} to escalate")
    await resolved(handle)
    return history_cost((await handle.fetch_history()).events)


async def resolved(handle: WorkflowHandle) -> None:
    await handle.execute_update(DepartureFollowUp.acknowledge, Acknowledge(staff_id=ON_CALL))
    await handle.execute_update(DepartureFollowUp.resolve, Resolve(
        staff_id=ON_CALL, outcome=ResolutionOutcome.REACHED_CLIENT))
    await handle.result()


async def bare_escalated(stack: Stack, imminent: bool) -> HistoryCost:
    handle = await stack.bare_client.start_workflow(
        BareEscalation.run, args=[next(PHONES), imminent, 1.0],
        id=f"bare-{uuid.uuid4().hex[:12]}", task_queue=BARE_QUEUE)

    async def paged() -> bool:
        return any(m.to == ON_CALL_PHONE and handle.id in m.body for m in stack.outbox.messages)

    await until(paged, 60, f"{handle.id} to page")
    await handle.execute_update(BareEscalation.acknowledge, ON_CALL)
    await handle.execute_update(BareEscalation.resolve, ON_CALL)
    await handle.result()
    return history_cost((await handle.fetch_history()).events)


async def escalation_paths(stack: Stack, report: Report) -> None:
    store = await AuditStore.open(stack.settings.audit_database_url)
    try:
        for path, risk, imminent in (("no reply", "moderate", False),
                                     ("imminent", "imminent", True)):
            ours = await asyncio.gather(*(aftercare_escalated(stack, store, risk)
                                          for _ in range(PATH_SAMPLES)))
            theirs = await asyncio.gather(*(bare_escalated(stack, imminent)
                                            for _ in range(PATH_SAMPLES)))
            history_rows(path, list(ours), list(theirs), report)
            say(f"{path}: histories measured")
    finally:
        await store.close()


# ---------------------------------------------------------------- imminent: POST to page


async def imminent_latency(stack: Stack, report: Report, rate: float, seconds: float,
                           profile: Path | None) -> None:
    count = round(rate * seconds)
    assert stack.worker is not None and stack.bare_worker is not None and stack.api is not None
    worker, api = cpu_seconds(stack.worker.pid), cpu_seconds(stack.api.pid)
    profiler = (start_profiler(stack.worker.pid, imminent_profile(profile))
                if profile else None)
    ours = await aftercare_post_to_page(stack, rate, count)
    if profiler is not None and profile is not None:
        stop_profiler(profiler, imminent_profile(profile))
    worker = (cpu_seconds(stack.worker.pid) - worker) * 1000 / count
    api = (cpu_seconds(stack.api.pid) - api) * 1000 / count
    say(f"imminent at {rate:.0f}/s, aftercare: p99 {percentile(ours, 0.99):.2f} s")
    bare_worker = cpu_seconds(stack.bare_worker.pid)
    theirs = await bare_start_to_page(stack, rate, count)
    bare_worker = (cpu_seconds(stack.bare_worker.pid) - bare_worker) * 1000 / count
    say(f"imminent at {rate:.0f}/s, bare: p99 {percentile(theirs, 0.99):.2f} s")
    for name, share, goal in (("p50", 0.5, None), ("p95", 0.95, None), ("p99", 0.99, 0.5)):
        report.add(Row(f"imminent POST→page {name} s at {rate:.0f}/s",
                       percentile(ours, share), percentile(theirs, share),
                       f"≤ {goal} s" if goal else "", check=at_most(goal) if goal else None))
    report.add(Row("imminent: worker CPU ms/follow-up until paged", worker, bare_worker),
               Row("imminent: API CPU ms/departure", api, None))
    report.notes.append(
        f"  imminent: {count} departures per arm at {rate:.0f}/s; aftercare POSTs "
        "/v1/departures to the API process, bare is started by a client at the same rate; "
        "both timed to the page's acceptance at the SMS outbox")


def imminent_profile(profile: Path | None) -> Path:
    assert profile is not None
    return profile.with_name(f"{profile.stem}-imminent{profile.suffix}")


async def paced(rate: float, count: int, one: Callable[[int], Awaitable[Any]]) -> list:
    began = time.monotonic()
    tasks = []
    for index in range(count):
        await asyncio.sleep(max(0.0, began + index / rate - time.monotonic()))
        tasks.append(asyncio.create_task(one(index)))
    return await asyncio.gather(*tasks)


async def aftercare_post_to_page(stack: Stack, rate: float, count: int) -> list[float]:
    key = stack.settings.api_keys[ALARM]
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=60,
                                 headers={"Authorization": f"Bearer {key}"}) as http:
        async def post(_: int) -> tuple[str, datetime]:
            event = departure(next(PHONES), ALARM, "imminent")
            sent_at = datetime.now(UTC)
            answer = await http.post("/v1/departures", json=event.model_dump(mode="json"))
            if answer.status_code != 202:
                raise SystemExit(f"POST /v1/departures: {answer.status_code} {answer.text}")
            return answer.json()["workflow_id"], sent_at

        posted = await paced(rate, count, post)
    store = await AuditStore.open(stack.settings.audit_database_url)
    try:
        async def code_of(entry: tuple[str, datetime]) -> str:
            return await until(lambda: escalation_code(store, entry[0]), 120, "escalations")

        codes = [await code_of(entry) for entry in posted]
    finally:
        await store.close()

    def page_at(code: str) -> datetime | None:
        return min((m.date_created for m in stack.outbox.messages
                    if m.to == ON_CALL_PHONE and code in m.body), default=None)

    await until(lambda: _async(all(page_at(c) for c in codes)), 120, "every page")
    return [(page_at(code) - sent_at).total_seconds()  # type: ignore[operator]
            for code, (_, sent_at) in zip(codes, posted, strict=True)]


async def bare_start_to_page(stack: Stack, rate: float, count: int) -> list[float]:
    async def start(_: int) -> tuple[str, datetime]:
        sent_at = datetime.now(UTC)
        handle = await stack.bare_client.start_workflow(
            BareEscalation.run, args=[next(PHONES), True, 1.0],
            id=f"bare-{uuid.uuid4().hex[:12]}", task_queue=BARE_QUEUE)
        return handle.id, sent_at

    started = await paced(rate, count, start)

    def page_at(workflow_id: str) -> datetime | None:
        return min((m.date_created for m in stack.outbox.messages
                    if m.to == ON_CALL_PHONE and workflow_id in m.body), default=None)

    await until(lambda: _async(all(page_at(w) for w, _ in started)), 120, "every bare page")
    return [(page_at(w) - sent_at).total_seconds()  # type: ignore[operator]
            for w, sent_at in started]


async def _async(value: Any) -> Any:
    return value


# ---------------------------------------------------------------- timer storm


@dataclass
class Storm:
    last_after_due: float
    send_rate: float
    duplicates: int
    settled_before_due: bool
    crisis_paged_after: float
    tasks_timed_out: int


async def timer_storm(stack: Stack, report: Report, count: int,
                      contended: bool = False) -> None:
    """The storm; ``contended``: another process keeps one core busy from before the due
    second until every check-in is out, as a busy host's other work would."""
    label = f"timer storm of {count}" + (", one core taken" if contended else "")
    ours = await storm_arm(stack, count, aftercare=True, contended=contended)
    say(f"{label}, aftercare: last +{ours.last_after_due:.1f} s, a crisis text in it "
        f"paged after {ours.crisis_paged_after:.1f} s")
    theirs = await storm_arm(stack, count, aftercare=False, contended=contended)
    say(f"{label}, bare: last +{theirs.last_after_due:.1f} s, a crisis text in it paged "
        f"after {theirs.crisis_paged_after:.1f} s")
    report.add(
        Row(f"{label}: last accepted, s after due", ours.last_after_due,
            theirs.last_after_due, "≤ 15 s", check=at_most(15)),
        Row(f"{label}: check-ins sent/s", ours.send_rate, theirs.send_rate),
        Row(f"{label}: sent twice", ours.duplicates, theirs.duplicates, "0",
            check=at_most(0)),
        Row(f"{label}: workflow tasks timed out", ours.tasks_timed_out,
            theirs.tasks_timed_out),
        Row(f"{label}: a crisis text in it, s to the page", ours.crisis_paged_after,
            theirs.crisis_paged_after))
    if not contended:
        report.notes.append(
            f"  timer storm: {count} started by a client 50 at a time, due "
            f"{storm_lead(count):.0f} s after the first start, so that each worker has done "
            "every first step before; once the first check-in is out, a client whose own "
            "check-in is a day away texts a crisis (Aftercare's passed on as its intake does, "
            "bare's a signal), timed to the on-call's page")
    else:
        report.notes.append(
            "  timer storm, one core taken: the same, with a busy loop in a process of its "
            "own from the moment the worker is idle until the last check-in is out")
    if not (ours.settled_before_due and theirs.settled_before_due):
        report.notes.append(f"  {label}: a worker was still doing first steps at the due "
                            "second, so its figure counts them too")


@contextmanager
def one_core_taken(taken: bool) -> Iterator[None]:
    """A process that keeps one core busy while the block runs (when ``taken``)."""
    if not taken:
        yield
        return
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        hog.kill()
        hog.wait()


def storm_lead(count: int) -> float:
    """Seconds from the first start to the due second: long enough to start them all and
    for the worker to take every first step (15 to 50 a second here, after other work)."""
    return 3 + count / 12


async def idle_by(pid: int, due: datetime) -> bool:
    """Whether the process went idle (under 5% of a core for a second) before ``due``."""
    while datetime.now(UTC) < due:
        before = cpu_seconds(pid)
        await asyncio.sleep(1)
        if cpu_seconds(pid) - before < 0.05:
            return True
    return False


async def storm_arm(stack: Stack, count: int, aftercare: bool, contended: bool) -> Storm:
    # The storm is of check-ins long scheduled, as a clinic's are: every follow-up is asleep
    # on its timer when the second comes, so only the storm's own work is counted.
    due = datetime.now(UTC) + timedelta(seconds=storm_lead(count))
    worker = stack.worker if aftercare else stack.bare_worker
    assert worker is not None
    departed_at = due - timedelta(seconds=CHECKIN_DELAY_STORM_SECONDS)
    phones = [next(PHONES) for _ in range(count)]

    async def start(index: int) -> WorkflowHandle:
        if aftercare:
            started = await start_followup(stack.client, stack.settings, stack.policies,
                                           departure(phones[index], STORM,
                                                     departed_at=departed_at))
            return stack.client.get_workflow_handle(started.workflow_id)
        return await stack.bare_client.start_workflow(
            BareCheckIn.run, args=[phones[index], due.isoformat()],
            id=f"bare-{uuid.uuid4().hex[:12]}", task_queue=BARE_QUEUE)

    handles = await gathered(count, 50, start)
    in_crisis = await storm_witness(stack, aftercare)
    settled_before_due = await idle_by(worker.pid, due)
    wanted = set(phones)

    def sent() -> list[Any]:
        return [m for m in stack.outbox.messages if m.to in wanted]

    with one_core_taken(contended):
        await until(lambda: _async(bool(sent())), 60 + count / 5, "the storm's first check-in")
        texted_at = datetime.now(UTC)
        await text_a_crisis(stack, in_crisis, aftercare)
        await until(lambda: _async(len({m.to for m in sent()}) == count), 180 + count / 5,
                    "every check-in of the storm")
        paged = await first_page_after(stack, texted_at)
    await asyncio.sleep(2)  # a duplicate would come now
    times = sorted(m.date_created for m in sent())
    per_phone = Counter(m.to for m in sent())
    spread = (times[-1] - times[0]).total_seconds()
    timed_out = await gathered(count, 50, lambda index: tasks_timed_out(handles[index]))
    return Storm(last_after_due=(times[-1] - due).total_seconds(),
                 send_rate=count / spread if spread else float("inf"),
                 duplicates=sum(n - 1 for n in per_phone.values()),
                 settled_before_due=settled_before_due,
                 tasks_timed_out=sum(timed_out),
                 crisis_paged_after=(paged - texted_at).total_seconds())


async def tasks_timed_out(handle: WorkflowHandle) -> int:
    """Workflow tasks of one run that timed out: in a storm, mostly tasks that waited longer
    than the sticky-queue timeout on the worker's own queue and went to the shared one, where
    the worker takes them again with the whole history and replays it."""
    return sum(1 for event in (await handle.fetch_history()).events
               if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT)


async def storm_witness(stack: Stack, aftercare: bool) -> WorkflowHandle:
    """A follow-up outside the storm (its check-in a day away), asleep like the rest when
    the storm comes: the one whose client texts a crisis in the middle of it."""
    if aftercare:
        started = await start_followup(stack.client, stack.settings, stack.policies,
                                       departure(next(PHONES), OPEN))
        return stack.client.get_workflow_handle(started.workflow_id)
    due = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    return await stack.bare_client.start_workflow(
        BareCheckIn.run, args=[next(PHONES), due], id=f"bare-{uuid.uuid4().hex[:12]}",
        task_queue=BARE_QUEUE)


async def text_a_crisis(stack: Stack, witness: WorkflowHandle, aftercare: bool) -> None:
    """The client's crisis text: Aftercare's as its intake passes a text on (the follow-up put
    ahead of routine work, then signalled), bare's a plain signal."""
    text = "i want to kill myself"
    if aftercare:
        await actions.send_reply(stack.client, witness.id, ClientReply(text=text, channel="sms"))
    else:
        await witness.signal("client_reply", arg=text)


async def first_page_after(stack: Stack, since: datetime) -> datetime:
    """When the outbox accepted the on-call's first page since ``since``."""
    return await until(lambda: _async(min(
        (m.date_created for m in stack.outbox.messages
         if m.to == ON_CALL_PHONE and m.date_created >= since), default=None)),
        90, "the page for the crisis text")


# ---------------------------------------------------------------- a worker dies


async def failover(stack: Stack, report: Report) -> None:
    """A crisis text the moment the worker that holds the follow-up is killed, while a
    second worker is up: the text's workflow task first goes to the dead worker's own
    (sticky) queue."""
    ours = await failover_arm(stack, aftercare=True)
    say(f"a crisis text as its worker is killed, aftercare: paged after {ours:.1f} s")
    theirs = await failover_arm(stack, aftercare=False)
    say(f"a crisis text as its worker is killed, bare: paged after {theirs:.1f} s")
    report.add(Row("a crisis text as the worker holding it is killed: s to the page", ours,
                   theirs))
    report.notes.append(
        "  worker killed: a second worker of the arm up, a follow-up waiting for the reply "
        "to its check-in; a second after the check-in is out, the worker that ran its last "
        "task is SIGKILLed and the client texts a crisis at once, timed to the on-call's page")


async def failover_arm(stack: Stack, aftercare: bool) -> float:
    second = stack.spawn_worker(aftercare)
    first = stack.worker if aftercare else stack.bare_worker
    assert first is not None
    phone = next(PHONES)
    if aftercare:
        started = await start_followup(stack.client, stack.settings, stack.policies,
                                       departure(phone))
        witness = stack.client.get_workflow_handle(started.workflow_id)
    else:
        witness = await stack.bare_client.start_workflow(
            BareCrisisReply.run, phone, id=f"bare-{uuid.uuid4().hex[:12]}",
            task_queue=BARE_QUEUE)
    await until(lambda: _async(any(m.to == phone for m in stack.outbox.messages)), 30,
                f"{witness.id}'s check-in")
    await asyncio.sleep(1)  # the check-in's outcome taken in, on the worker's own queue
    last_task_by = [e.workflow_task_started_event_attributes.identity.partition("@")[0]
                    for e in (await witness.fetch_history()).events
                    if e.HasField("workflow_task_started_event_attributes")][-1]
    held_by = next((p for p in (first, second) if str(p.pid) == last_task_by), None)
    if held_by is None:  # killing the other one would time a page with no failover in it
        raise SystemExit(f"{witness.id}'s last task ran on neither worker ({last_task_by})")
    stop_group(held_by, signal.SIGKILL)
    texted_at = datetime.now(UTC)
    await text_a_crisis(stack, witness, aftercare)
    paged = await first_page_after(stack, texted_at)
    survivor = second if held_by is first else first
    if aftercare:
        stack.worker = survivor
    else:
        stack.bare_worker = survivor
    return (paged - texted_at).total_seconds()


# ---------------------------------------------------------------- the board


async def board(stack: Stack, report: Report, followups: int, loads: int) -> None:
    await seed(stack.settings, followups)
    up = await board_loads(stack.settings, loads, with_temporal=True)
    stack.stop_worker()
    down = await board_loads(stack.settings, loads, with_temporal=True)
    nowhere = stack.settings.model_copy(update={"temporal_address": NOWHERE})
    unreachable = await board_loads(nowhere, loads, with_temporal=False)
    for name, timings in (("workers up", up), ("every worker stopped", down),
                          ("Temporal unreachable", unreachable)):
        report.add(
            Row(f"board, {followups} open, {name}: p50 s", percentile(timings, 0.5), None),
            Row(f"board, {followups} open, {name}: p95 s", percentile(timings, 0.95), None,
                "< 1 s", check=at_most(1.0)))
    report.notes.append(
        f"  board: first page of {followups} stored open follow-ups (and {followups // 10} "
        f"closed), {loads} loads per arm through the API app in this process; it reads "
        "the stored views, so there is no bare arm: the goal is absolute")


# ---------------------------------------------------------------- 10,000 open


@dataclass
class Open:
    start_rate: float
    settled_rate: float
    worker_rss: float
    server_rss: float


async def open_followups(folder: Path, count: int, aftercare: bool,
                         audit_database_url: str | None) -> Open:
    arm_folder = folder / ("open-aftercare" if aftercare else "open-bare")
    arm_folder.mkdir()
    async with bench_stack(arm_folder, api=False, bare=not aftercare, aftercare=aftercare,
                           audit_database_url=audit_database_url) as stack:
        worker = stack.worker if aftercare else stack.bare_worker
        assert worker is not None and stack.server.process is not None
        due = (datetime.now(UTC) + timedelta(days=1)).isoformat()

        async def start(_: int) -> None:
            if aftercare:
                await start_followup(stack.client, stack.settings, stack.policies,
                                     departure(next(PHONES), OPEN))
            else:
                await stack.bare_client.start_workflow(
                    BareCheckIn.run, args=[next(PHONES), due],
                    id=f"bare-{uuid.uuid4().hex[:12]}", task_queue=BARE_QUEUE)

        began = time.monotonic()
        await gathered(count, 50, start)
        rate = count / (time.monotonic() - began)
        say(f"{count} open, {'aftercare' if aftercare else 'bare'}: started at {rate:.0f}/s")
        # Settled: the worker has done every first task and its audit writes.
        before, busy_until = cpu_seconds(worker.pid), time.monotonic()
        while True:
            await asyncio.sleep(5)
            now = cpu_seconds(worker.pid)
            if now - before < 0.25:
                break
            before, busy_until = now, time.monotonic()
        return Open(rate, count / (busy_until - began), rss_mb(worker.pid),
                    rss_mb(stack.server.process.pid))


async def open_rows(folder: Path, report: Report, count: int,
                    audit_database_url: str | None) -> None:
    ours = await open_followups(folder, count, True, audit_database_url)
    theirs = await open_followups(folder, count, False, audit_database_url)
    report.add(
        Row(f"{count} open: worker RSS MB", ours.worker_rss, theirs.worker_rss, "≤ 300 MB",
            check=at_most(300)),
        Row(f"{count} open: server RSS MB", ours.server_rss, theirs.server_rss),
        Row(f"{count} open: started/s", ours.start_rate, theirs.start_rate),
        Row(f"{count} open: first steps done/s", ours.settled_rate, theirs.settled_rate))
    report.notes.append(f"  {count} open: each arm on a fresh in-memory dev server, started "
                        "by a client 50 at a time, memory read once the worker is idle; "
                        "'first steps done' counts from the first start to the worker's last "
                        "busy 5 s")


# ---------------------------------------------------------------- the run


async def main(args: argparse.Namespace) -> None:
    report = Report()
    began = time.monotonic()
    say("starting")
    async with AsyncExitStack() as exits:
        folder = Path(exits.enter_context(tempfile.TemporaryDirectory()))
        audit_database_url = (
            await exits.enter_async_context(fresh_postgres_database(args.postgres))
            if args.postgres else None)
        report.notes.append(
            "  audit store: PostgreSQL on this machine (a fresh database), as deployed; "
            "'database server CPU' is its processes' CPU over each round" if args.postgres
            else "  audit store: SQLite in the worker's process (the embedded default)")
        async with bench_stack(folder, audit_database_url=audit_database_url) as stack:
            say("stack up")
            await happy(stack, report, args.followups, args.concurrency, args.profile)
            await escalation_paths(stack, report)
            await imminent_latency(stack, report, args.rate, args.seconds, args.profile)
            await timer_storm(stack, report, args.storm)
            if args.full or args.contended:
                await timer_storm(stack, report, args.storm, contended=True)
            if args.full or args.failover:
                await failover(stack, report)
            await board(stack, report, 1000, args.loads)
        if args.full:
            await open_rows(folder, report, args.open, audit_database_url)
    report.notes.append(f"  load average at the end {load_average()}; "
                        f"{time.monotonic() - began:.0f} s in all")
    print()
    report.print()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="1,000 in the timer storm, 10,000 open follow-ups, longer runs")
    parser.add_argument("--profile", type=Path,
                        help="sample the Aftercare worker with py-spy (if installed) during "
                             "the first happy-path round and write the top frames here, and "
                             "during the imminent run beside it (-imminent)")
    parser.add_argument("--followups", type=int, help="happy path, per round and arm")
    parser.add_argument("--concurrency", type=int, default=20, help="happy path in flight")
    parser.add_argument("--rate", type=float, default=20.0, help="imminent departures/s")
    parser.add_argument("--seconds", type=float, help="imminent: how long at that rate")
    parser.add_argument("--storm", type=int, help="check-ins due in the same second")
    parser.add_argument("--contended", action="store_true",
                        help="the storm again with one core taken (always with --full)")
    parser.add_argument("--failover", action="store_true",
                        help="a crisis text as the worker holding it is killed, a second "
                             "worker up (always with --full)")
    parser.add_argument("--open", type=int, default=10_000, help="with --full")
    parser.add_argument("--loads", type=int, default=20, help="board loads per arm")
    parser.add_argument("--postgres", metavar="URL",
                        help="the audit store on a fresh database of the PostgreSQL server "
                             "on this machine that this superuser's URL names (for example "
                             "postgresql://postgres@127.0.0.1:5432/postgres), as deployed, "
                             "instead of SQLite in the worker's process")
    args = parser.parse_args()
    args.followups = args.followups or (60 if args.full else 30)
    args.seconds = args.seconds or (10.0 if args.full else 5.0)
    args.storm = args.storm or (1000 if args.full else 200)
    asyncio.run(main(args))
