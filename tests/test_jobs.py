"""explorer.jobs.JobQueue: background maps shared by every session, fairly."""
import threading
import time

import pytest

from explorer.jobs import JobQueue
from explorer.loaders import ResultCache
from tests.waiting import wait_for


class Gate:
    """A job function that blocks until the test opens its gate, and says when it starts."""

    def __init__(self):
        self.started = threading.Event()
        self.open = threading.Event()
        self.calls = 0

    def __call__(self, value):
        self.calls += 1
        self.started.set()
        assert self.open.wait(30), "the test never opened the gate"
        return value


def done(job, timeout=10):
    assert job.wait(timeout), f"job {job.key} did not finish"
    return job


def test_a_result_is_computed_once_and_kept_for_every_session():
    q = JobQueue(workers=1)
    calls = []
    a = q.submit("alice", "k", lambda: calls.append(1) or 42)
    assert done(a).result == 42 and a.state == "done"
    b = q.submit("bob", "k", lambda: calls.append(1) or 43)          # another session, the same map
    assert b.done and b.result == 42 and calls == [1]
    assert q.wait_idle(5)


def test_a_new_request_supersedes_the_sessions_waiting_one():
    q = JobQueue(workers=1)
    gate = Gate()
    running = q.submit("alice", "first", gate, "first")
    assert gate.started.wait(10)
    second = q.submit("alice", "second", lambda: "second")             # waits: alice's first is running
    third = q.submit("alice", "third", lambda: "third")                 # the slider moved on
    assert second.state == "cancelled" and second.done
    assert third.state == "waiting"
    gate.open.set()
    assert done(running).result == "first" and done(third).result == "third"
    assert q.wait_idle(5)


def test_a_superseded_job_that_another_session_waits_for_still_runs():
    q = JobQueue(workers=1)
    gate = Gate()
    q.submit("carol", "busy", gate, "busy")
    assert gate.started.wait(10)
    shared = q.submit("alice", "shared", lambda: "shared")
    same = q.submit("bob", "shared", lambda: "other")                  # bob wants the same map
    assert same is shared
    q.submit("alice", "mine", lambda: "mine")                          # alice moves on; bob still waits
    assert shared.state == "waiting"
    gate.open.set()
    assert done(shared).result == "shared"
    assert q.wait_idle(10)


def test_sessions_take_turns_so_a_sweep_delays_another_sessions_first_map_by_one_job_at_most():
    q = JobQueue(workers=1)
    order = []
    gate = Gate()
    q.submit("sweeper", ("sweep", 0), gate, "sweep-0")
    assert gate.started.wait(10)
    for i in range(1, 20):                                             # a slider sweep: 19 more requests
        q.submit("sweeper", ("sweep", i), lambda i=i: order.append(f"sweep-{i}") or i)
    visitor = q.submit("visitor", "first map", lambda: order.append("visitor") or "map")
    assert q.ahead_of("visitor") == 1                                  # only the job already running
    gate.open.set()
    assert done(visitor).result == "map"
    assert q.wait_idle(10)
    # The sweeper was served last (its running job), so the visitor goes first although the
    # sweeper's waiting request is older; the superseded requests never ran.
    assert order == ["visitor", "sweep-19"]


def test_one_running_job_per_session_so_two_workers_serve_two_sessions():
    q = JobQueue(workers=2)
    gate = Gate()
    q.submit("sweeper", "a", gate, "a")
    assert gate.started.wait(10)
    q.submit("sweeper", "b", lambda: "b")                              # waits for sweeper's own job
    other = q.submit("visitor", "v", lambda: "v")                      # gets the second worker at once
    assert done(other).result == "v"
    gate.open.set()
    assert q.wait_idle(10)


def test_a_failure_is_reported_once_then_tried_afresh():
    q = JobQueue(workers=1)
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise ValueError("boom")
        return "ok"

    first = done(q.submit("alice", "k", flaky))
    assert first.state == "failed" and isinstance(first.error, ValueError)
    assert q.submit("alice", "k", flaky) is first                     # the page sees the failure once
    again = done(q.submit("alice", "k", flaky))                       # a later rerun tries again
    assert again.result == "ok" and len(attempts) == 2


def test_a_job_waits_for_the_servers_warm_up_and_workers_end_when_idle():
    q = JobQueue(workers=1)
    warm = threading.Event()
    job = q.submit("alice", "k", lambda: "map", after=warm)
    assert not job.wait(0.2) and job.state == "running"               # holding its turn until the warm-up ends
    warm.set()
    assert done(job).result == "map"
    assert q.wait_idle(5)
    wait_for(lambda: q.workers == 0, 5, "the idle worker to end")


def test_result_cache_is_least_recently_used():
    c = ResultCache(size=2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1                                             # a is now the most recent
    c.put("c", 3)
    assert "b" not in c and c.get("a") == 1 and c.get("c") == 3
    assert c.get_or_compute("d", lambda: 4) == 4 and c.get_or_compute("d", lambda: pytest.fail("again")) == 4


class Steps:
    """A job function with progress: it reports a step at a time, each once the test lets it go on."""

    def __init__(self, steps=4):
        self.steps = steps
        self.reported = threading.Semaphore(0)
        self.go_on = threading.Semaphore(0)
        self.finished_steps = 0

    def __call__(self, value, progress):
        for i in range(self.steps):
            progress(i / self.steps, f"step {i + 1} of {self.steps}")    # raises once nobody wants it
            self.reported.release()
            assert self.go_on.acquire(timeout=30), "the test never let the job go on"
            self.finished_steps += 1
        return value


def test_a_job_reports_its_progress_and_an_estimate_of_the_time_left():
    q = JobQueue(workers=1)
    work = Steps()
    job = q.submit("alice", "tsne", work, "map", progress=True)
    assert work.reported.acquire(timeout=10)
    work.go_on.release()
    assert work.reported.acquire(timeout=10)
    assert job.state == "running" and job.fraction == 0.25 and job.stage == "step 2 of 4"
    job.started -= 10                                   # as if it had run for 10 s: 25% done, so about 30 s left
    assert job.eta == pytest.approx(30, rel=0.05)
    for _ in range(3):
        work.go_on.release()
    assert done(job).result == "map" and job.eta is None
    assert q.wait_idle(5)


def test_a_newer_request_stops_the_sessions_running_job_that_nobody_else_wants():
    q = JobQueue(workers=1)
    work = Steps()
    slow = q.submit("alice", "tsne", work, "old map", progress=True)
    assert work.reported.acquire(timeout=10)
    newer = q.submit("alice", "umap", lambda: "new map")             # alice moved on
    work.go_on.release()                                               # its next report sees nobody wants it
    assert done(slow).state == "cancelled" and work.finished_steps == 1
    assert done(newer).result == "new map"
    assert "tsne" not in q.results
    again = q.submit("alice", "tsne", lambda progress: "map", progress=True)   # asked again: computed afresh
    assert again is not slow and done(again).result == "map"
    assert q.wait_idle(10)


def test_a_running_job_another_session_wants_runs_on_and_forget_stops_one_nobody_wants():
    q = JobQueue(workers=2)
    work = Steps(steps=2)
    shared = q.submit("alice", "tsne", work, "map", progress=True)
    assert q.submit("bob", "tsne", work, "map", progress=True) is shared
    assert work.reported.acquire(timeout=10)
    q.forget("alice")                                                  # alice goes back to PCA; bob still waits
    work.go_on.release()
    assert work.reported.acquire(timeout=10)
    work.go_on.release()
    assert done(shared).result == "map" and work.finished_steps == 2
    lonely = Steps(steps=2)
    mine = q.submit("carol", "tsne2", lonely, "x", progress=True)
    assert lonely.reported.acquire(timeout=10)
    q.forget("carol")
    lonely.go_on.release()
    assert done(mine).state == "cancelled"
    assert q.wait_idle(10)
def test_a_background_job_uses_one_openmp_thread_on_a_server_capped_to_one():
    """t-SNE's gradient runs on OpenMP threads: capped, one visitor's map takes one core, not every core."""
    from threadpoolctl import threadpool_info

    def omp_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "openmp"]

    outside = omp_threads()
    if not outside or max(outside) < 2:
        pytest.skip("OpenMP runs one thread here anyway")
    capped, free = JobQueue(threads_per_job=1), JobQueue()
    assert done(capped.submit("s", "k", omp_threads)).result == [1] * len(outside)
    assert done(free.submit("s", "k", omp_threads)).result == outside
    assert omp_threads() == outside                        # the cap never leaks out of the worker


def test_heavy_work_a_page_asks_for_waits_its_turn_and_keeps_no_result():
    """Analyses run as jobs too: never more heavy work at once than workers, sessions in turn, a newer
    request of a session replaces its waiting one, and the result is the asker's alone."""
    q = JobQueue(workers=2)
    gates = [Gate() for _ in range(3)]
    busy = q.submit("mapper", "slow map", gates[0], "map")                  # one worker busy with a map
    mine = q.submit_turn("analyst", gates[1], "analysis")                    # the second worker
    assert gates[0].started.wait(10) and gates[1].started.wait(10)
    waiting = q.submit_turn("other", gates[2], "first request")
    assert waiting.state == "waiting" and q.ahead_of("other") == 2           # both workers are taken
    newer = q.submit_turn("other", gates[2], "newer request")                # the same session asks again
    assert waiting.state == "cancelled" and newer.state == "waiting"
    gates[1].open.set()
    assert done(mine).result == "analysis"
    gates[2].open.set()
    assert done(newer).result == "newer request" and gates[2].calls == 1
    gates[0].open.set()
    assert done(busy).result == "map" and q.wait_idle(10)
    assert not any(isinstance(k, tuple) and k[0] == "turn" for k in q.results._items)   # never shared


def test_workers_run_below_the_pages_cpu_priority():
    import os

    if not hasattr(os, "getpriority"):
        pytest.skip("no thread priorities here")
    q = JobQueue()
    nice = done(q.submit("s", "nice", lambda: os.getpriority(os.PRIO_PROCESS, 0))).result
    assert nice >= 10 > os.getpriority(os.PRIO_PROCESS, 0)                 # the caller's own priority is untouched


def test_a_closed_tabs_waiting_and_running_jobs_are_cancelled_at_the_next_check():
    """Two tabs started IWAE and left; a later visitor's map waited 240 s. Now a session that has ended loses
    its waiting job at once and its running one at its next progress report (checked at most once a second)."""
    ended: set[str] = set()
    q = JobQueue(workers=1, gone=lambda s: s in ended)
    reports = threading.Event()

    def long_work(progress):
        deadline = time.monotonic() + 60                                # ends by itself only if never stopped
        while time.monotonic() < deadline:
            progress(0.5)
            reports.set()
        return "ran to the end"

    running = q.submit("left", "iwae", long_work, progress=True)
    assert reports.wait(10)
    waiting = q.submit_turn("also-left", lambda: "never")           # queued behind it
    later = q.submit("visitor", "umap", lambda: "map")
    ended.update({"left", "also-left"})                                 # both tabs close
    assert done(running, 30).state == "cancelled"
    assert waiting.state == "cancelled"
    assert done(later).result == "map"
    assert q.wait_idle(5) and q.prune(every=0) == []                    # nothing of theirs is left
