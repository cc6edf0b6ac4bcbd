"""What an open dashboard costs the fake: with a real headless Chromium page on ``/__admin/ui``
(reading ``/__admin/events`` live) against none, on the same fake, in alternating rounds.

Figures, each against the run without a page:

- throughput: ``GET /health`` at the fake's capacity (closed loop, the usual generator);
- CPU per request at about 2,000 requests/s (a paced generator), with the page, then with a plain
  SSE reader (a Python thread) in its place, the fake process's own cost of feeding a stream;
- the event stream's CPU per request measured in process (the journal fed 20,000 requests with
  one stream open and with none), steadier than the others.

Goal: the page costs at most 5%. The CPU ratios over sockets move by 10-20% between identical
runs on a shared 2-core machine, more than the effect; the goal is judged on the in-process
figure: the stream's CPU per request against the fake's at 2,000 requests/s. Also reported, from
inside the page at 2,000 requests/s: the longest stall of its main thread (its responsiveness)
and how many requests it showed.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench._load import cpu_seconds, generator, measure, request_bytes
from bench._servers import fake, free_port

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Started in the page: the longest gap between 50 ms ticks of its main thread, beyond 50 ms.
_LAG_PROBE = """() => {
  window.__lag = 0; let last = performance.now();
  setInterval(() => { const now = performance.now(); window.__lag = Math.max(window.__lag, now - last - 50);
                      last = now; }, 50);
}"""


@contextmanager
def _browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def _open(page: Any, url: str) -> None:
    page.goto(f"{url}/__admin/ui")
    page.locator("#conn[data-state=live]").wait_for(timeout=10_000)
    page.evaluate(_LAG_PROBE)
    page.wait_for_timeout(500)  # the page's first replay and drawing are not what is measured
    page.evaluate("() => { window.__lag = 0; }")


@contextmanager
def _sse_reader(url: str) -> Iterator[list[int]]:
    """A thread reading ``/__admin/events`` as fast as it comes; yields [events read so far]."""
    import requests

    count = [0]
    stop = threading.Event()
    response = requests.get(f"{url}/__admin/events", stream=True, timeout=30)

    def read() -> None:
        try:
            for chunk in response.iter_content(chunk_size=None):
                count[0] += chunk.count(b"\nid: ") + chunk.startswith(b"id: ")
                if stop.is_set():
                    return
        except (requests.RequestException, OSError, AttributeError):
            return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield count
        time.sleep(0.3)  # the last batch
    finally:
        stop.set()
        response.close()
        reader.join(5)


def _close(page: Any) -> None:
    page.goto("about:blank")  # the stream closes with the page


async def _paced(port: int, rate: float, duration: float, connections: int = 16) -> tuple[int, float]:
    """``GET /health`` at ``rate`` requests/s over keep-alive connections; (answered, elapsed)."""
    payload = request_bytes("GET", "/health", f"127.0.0.1:{port}")
    interval = connections / rate
    done = 0
    start = time.perf_counter() + 0.05

    async def one(offset: float) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        due = start + offset
        end = start + duration
        try:
            while due < end:
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(payload)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                done += 1
                due += interval
        finally:
            writer.close()

    await asyncio.gather(*(one(i * interval / connections) for i in range(connections)))
    return done, time.perf_counter() - start


def _in_thread(port: int, rate: float, duration: float) -> tuple[int, float]:
    # Playwright's sync API runs an event loop in this thread: the generator gets its own.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _paced(port, rate, duration)).result()


def _cpu_at_rate(pid: int, port: int, rate: float, duration: float) -> tuple[float, float]:
    """(CPU microseconds per request, achieved requests/s) of the fake at ``rate``."""
    _in_thread(port, rate, 0.5)  # warm-up
    before = cpu_seconds(pid)
    done, elapsed = _in_thread(port, rate, duration)
    return (cpu_seconds(pid) - before) * 1e6 / max(done, 1), done / elapsed


def _entry(seq: int) -> Any:
    from mock_server._faults._journal import Entry

    return Entry(
        seq=seq,
        request_id=f"aaa8044c26b00000{seq:08d}",
        client_request_id=False,
        method="GET",
        path="/profiles/acme/p1",
        query="",
        tenant="acme",
        session="s1",
        idempotency_key=None,
        arrived_at=1795773519.19 + seq * 0.0005,
        arrived_mono=float(seq),
        fault=None,
        rule=None,
        rules=(),
        injected_delay_s=0.0,
        status=200,
        outcome="response",
        duration_s=0.0003,
    )


async def _journal_cpu(n: int, stream: bool) -> tuple[float, int]:
    """CPU seconds to journal ``n`` requests (200 per loop turn), with one event stream open or
    none, and the bytes the stream wrote."""
    from mock_server._faults._events import EventHub
    from mock_server._faults._journal import Filter, Journal

    journal = Journal(10_000)
    hub = EventHub(journal, flush_s=0.01)
    written = 0

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal written
        written += len(message.get("body", b""))

    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    task = asyncio.create_task(hub.stream(Filter())({"type": "http"}, receive, send)) if stream else None
    await asyncio.sleep(0.01)
    entries = [_entry(i) for i in range(n)]
    start = time.process_time()
    for i, entry in enumerate(entries):
        journal.record(entry)
        journal.complete(entry)
        if i % 200 == 199:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    spent = time.process_time() - start
    hub.close()
    if task is not None:
        await task
    return spent, written


def stream_cost_us(n: int = 20_000) -> float:
    """The event stream's own CPU per request, in process (the socket writes, one per 64 KiB of
    events, left out): a faithful consumer that reads everything at once."""
    with ThreadPoolExecutor(1) as pool:
        with_stream, written = pool.submit(asyncio.run, _journal_cpu(n, True)).result()
        without, _ = pool.submit(asyncio.run, _journal_cpu(n, False)).result()
    assert written > n * 300, "the stream wrote every event"
    return (with_stream - without) * 1e6 / n


def run(duration: float = 3.0, rounds: int = 3, rate: float = 2000.0) -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        return {"skipped": f"{CHROMIUM} is not installed (apt-get install chromium)"}
    host = "127.0.0.1"
    plain_rps: list[float] = []
    page_rps: list[float] = []
    plain_cap_cpu: list[float] = []
    page_cap_cpu: list[float] = []
    plain_cpu: list[float] = []
    page_cpu: list[float] = []
    achieved: list[float] = []
    lag_ms: list[float] = []
    reader_cpu: list[float] = []
    shown = 0
    with fake(free_port()) as served, _browser() as page:
        for _ in range(rounds):
            _close(page)
            cpu, _ = _cpu_at_rate(served.pid, served.port, rate, duration)
            plain_cpu.append(cpu)
            result = measure(host, served.port, "/health", duration=duration, pid=served.pid)
            plain_rps.append(result.rps)
            plain_cap_cpu.append(result.cpu_us or 0.0)
            _open(page, served.url)
            seen_before = int(page.locator("#seen").inner_text())
            cpu, got = _cpu_at_rate(served.pid, served.port, rate, duration)
            page.wait_for_timeout(500)  # the last batch reaches the page
            page_cpu.append(cpu)
            achieved.append(got)
            lag_ms.append(float(page.evaluate("() => window.__lag")))
            shown = int(page.locator("#seen").inner_text()) - seen_before
            result = measure(host, served.port, "/health", duration=duration, pid=served.pid)
            page_rps.append(result.rps)
            page_cap_cpu.append(result.cpu_us or 0.0)
            _close(page)
            with _sse_reader(served.url) as events:
                cpu, _ = _cpu_at_rate(served.pid, served.port, rate, duration)
            reader_cpu.append(cpu)
            assert events[0] >= rate * duration, events
    rps_a, rps_b = statistics.median(plain_rps), statistics.median(page_rps)
    cpu_a, cpu_b = statistics.median(plain_cpu), statistics.median(page_cpu)
    per_event = statistics.median(stream_cost_us() for _ in range(3))
    return {
        "generator": generator(),
        "stream_cpu_us_per_event": round(per_event, 2),
        "stream_share_of_a_core_at_rate": round(per_event * rate / 1e6, 4),
        # What the stream adds to the fake's CPU per request at that rate: the cost goal's figure.
        "stream_share_of_fake_cpu_at_rate": round(per_event / cpu_a, 4),
        "rounds": rounds,
        "no_page_rps": round(rps_a, 1),
        "page_rps": round(rps_b, 1),
        "throughput_ratio": round(rps_b / rps_a, 3),
        "no_page_capacity_cpu_us": round(statistics.median(plain_cap_cpu), 1),
        "page_capacity_cpu_us": round(statistics.median(page_cap_cpu), 1),
        "rate": rate,
        "achieved_rps": round(statistics.median(achieved), 1),
        "no_page_cpu_us": round(cpu_a, 1),
        "page_cpu_us": round(cpu_b, 1),
        "cpu_ratio": round(cpu_b / cpu_a, 3),
        "reader_cpu_us": round(statistics.median(reader_cpu), 1),
        "reader_cpu_ratio": round(statistics.median(reader_cpu) / cpu_a, 3),
        "page_max_stall_ms": round(max(lag_ms), 1),
        "page_events_last_round": shown,
    }


def report(figures: dict[str, Any]) -> str:
    if "skipped" in figures:
        return f"Dashboard cost: skipped ({figures['skipped']})"
    f = figures
    return "\n".join(
        [
            f"Dashboard cost: the fake with a headless Chromium page on /__admin/ui vs none"
            f" ({f['generator']},"
            f" medians of {f['rounds']} alternating rounds; goal: at most 5%)",
            f"  throughput (GET /health, closed loop): {f['page_rps']:.0f} vs {f['no_page_rps']:.0f}"
            f" requests/s: ratio {f['throughput_ratio']:.3f}; the fake's CPU per request"
            f" {f['page_capacity_cpu_us']:.0f} vs {f['no_page_capacity_cpu_us']:.0f} us",
            f"  fake CPU per request at {f['rate']:.0f} requests/s ({f['achieved_rps']:.0f} achieved):"
            f" {f['page_cpu_us']:.0f} vs {f['no_page_cpu_us']:.0f} us: ratio {f['cpu_ratio']:.3f}",
            f"  same with a plain SSE reader instead of Chromium (a Python thread reading the stream):"
            f" {f['reader_cpu_us']:.0f} vs {f['no_page_cpu_us']:.0f} us: ratio {f['reader_cpu_ratio']:.3f}",
            "  the event stream's own CPU per request (in process, median of 3):"
            f" {f['stream_cpu_us_per_event']:.1f} us, {100 * f['stream_share_of_fake_cpu_at_rate']:.1f}% of"
            f" the fake's CPU per request at {f['rate']:.0f} requests/s"
            f" ({100 * f['stream_share_of_a_core_at_rate']:.1f}% of a core); the ratios above move by"
            " 10-20% between identical runs on a shared machine",
            f"  the page at that rate: longest main-thread stall {f['page_max_stall_ms']:.0f} ms,"
            f" {f['page_events_last_round']} requests shown in the last round",
        ]
    )


if __name__ == "__main__":
    print(report(run()))
