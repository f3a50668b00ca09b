#!/usr/bin/env python3
"""`make soak`: ten minutes of steady, mixed load on two release consumers behind HAProxy, written to bench/SOAK.md.

Two consumers (their defaults, stdout to files) behind HAProxy in `mode tcp` with round robin and `/ready` checks,
as a Service is. Four generator processes send at steady open-model rates for SOAK_SECONDS (default 600): GET / on
keep-alive connections, sync CPU+memory tasks and async memory tasks on a connection each, and /metrics as a scrape.
Every 10 s each consumer's resident memory, open file descriptors and threads are read from /proc, and the memory
its tasks hold at that instant (`reserved_bytes` of /process/status): resident minus that is what a leak would grow.

Passes when, after the warm-up (the first fifth of the run), resident memory less task memory grew less than 5%
(the median of the last minute's samples against the first minute's), once every task has ended the allocator's own
count of live heap bytes is back within 2 MiB of its idle value before the load (a leak the registry's account shares
shows there), the file descriptors and threads of the last minute stay within what
the first minute after warm-up reached (plus 10 descriptors for connections open at the sampling instant, 2
threads for the blocking pool's coming and going), and
every generator ended with zero failures and exit 0. Exits 1 otherwise; SOAK.md records either.
"""
import json
import os
import urllib.request
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
REPORT = ROOT / "bench" / "SOAK.md"
LOGS = ROOT / "target" / "soak-logs"

SECONDS = int(os.environ.get("SOAK_SECONDS", "600"))
SAMPLE_EVERY = int(os.environ.get("SOAK_SAMPLE_EVERY", "10"))
RSS_GROWTH_LIMIT = 0.05
FD_SLACK = 10
# Tokio's blocking pool starts and retires threads with the tasks running at the instant.
THREAD_SLACK = 2
# Live heap the load may leave behind once every task has ended: connection buffers, label sets first seen under load.
LIVE_SLACK = 2 << 20

# (name, generator flags): steady open-model rates, well inside two pods' capacity on a 2-core machine.
LOADS = [
    ("GET / keep-alive", ["--path", "/", "--rate", "50"]),
    ("sync cpu+memory", ["--method", "POST", "--path", "/process?cpu_intensity=2&memory_size=20&duration=1",
                         "--rate", "2", "--no-connection-reuse"]),
    ("async memory", ["--method", "POST", "--path", "/process?cpu_intensity=1&memory_size=50&duration=2&async_mode=true",
                      "--rate", "1", "--no-connection-reuse"]),
    ("scrape /metrics", ["--path", "/metrics", "--rate", "1", "--no-connection-reuse"]),
]


def log(message):
    print(message, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, limit=10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on {port}")


def proc_figures(pid):
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kib = int(fields["VmRSS"].split()[0])
    threads = int(fields["Threads"])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return rss_kib, fds, threads


def task_memory_kib(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/process/status", timeout=5) as response:
        return json.load(response)["reserved_bytes"] // 1024


def idle_figures(pid, port, limit=120.0):
    """Once the consumer holds no task (none running or queued): resident KiB and the allocator's live heap bytes.

    The allocator counts every allocation and free itself, so a leak the task registry's own account also missed
    (resident less `reserved_bytes` hides it) still shows here as live bytes the load left behind."""
    deadline = time.monotonic() + limit
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/process/status", timeout=5) as response:
            status = json.load(response)
        if sum(status["tasks_running"].values()) == 0 and status["queue"]["length"] == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} still held tasks {limit:.0f} s after the load: {status}")
        time.sleep(0.5)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        exposition = response.read().decode()
    live = next(float(line.split()[1]) for line in exposition.splitlines() if line.startswith("allocator_live_bytes "))
    return proc_figures(pid)[0], live


def start_consumers(ports):
    LOGS.mkdir(parents=True, exist_ok=True)
    consumers = []
    for index, port in enumerate(ports):
        out = open(LOGS / f"consumer-{index}.log", "w")
        env = dict(os.environ, POD_NAME=f"consumer-{index}")
        process = subprocess.Popen([str(RELEASE / "consumer"), "--bind", "127.0.0.1", "--port", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT, env=env)
        consumers.append((process, out))
        wait_for_port(port)
    return consumers


def start_haproxy(ports, directory):
    port = free_port()
    servers = "".join(f"  server pod{i} 127.0.0.1:{p} check\n" for i, p in enumerate(ports))
    config = (
        "global\n  maxconn 4096\n"
        "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 120s\n  timeout server 120s\n"
        f"frontend service\n  bind 127.0.0.1:{port}\n  default_backend pods\n"
        "backend pods\n  balance roundrobin\n  option httpchk GET /ready\n  http-check expect status 200\n"
        f"  default-server inter 1s fall 2 rise 1\n{servers}"
    )
    path = Path(directory) / "haproxy.cfg"
    path.write_text(config)
    process = subprocess.Popen(["haproxy", "-db", "-f", str(path)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    wait_for_port(port)
    return process, f"http://127.0.0.1:{port}"


def start_generators(url):
    running = []
    for name, flags in LOADS:
        argv = [str(RELEASE / "generator"), "--url", url, *flags, "--duration", f"{SECONDS}s",
                "--max-retries", "0", "--probes", "2", "--output", "json"]
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        running.append((name, process))
    return running


def verdicts(samples, summaries, idle):
    warm_until = SECONDS / 5
    findings = []
    ok = True
    for index, (before, after) in enumerate(idle):
        left = after[1] - before[1]
        idle_ok = left <= LIVE_SLACK
        ok &= idle_ok
        findings.append(
            f"| consumer-{index} idle, before / after the load | {before[0] / 1024:.1f} MiB | {after[0] / 1024:.1f} MiB "
            f"| live heap {left / 1024:+.0f} KiB | | | {'pass' if idle_ok else 'FAIL'} |"
        )
    for index in sorted({s["pod"] for s in samples}):
        series = [s for s in samples if s["pod"] == index and s["t"] >= warm_until]
        if len(series) < 6:
            raise RuntimeError("too few samples after the warm-up: raise SOAK_SECONDS")
        minute = max(3, 60 // SAMPLE_EVERY)
        first, last = series[:minute], series[-minute:]
        rss_first = statistics.median(s["rss_kib"] - s["task_kib"] for s in first)
        rss_last = statistics.median(s["rss_kib"] - s["task_kib"] for s in last)
        growth = (rss_last - rss_first) / rss_first
        fd_first = max(s["fds"] for s in series[:minute])
        fd_last = max(s["fds"] for s in series[-minute:])
        th_first = max(s["threads"] for s in series[:minute])
        th_last = max(s["threads"] for s in series[-minute:])
        pod_ok = growth < RSS_GROWTH_LIMIT and fd_last <= fd_first + FD_SLACK and th_last <= th_first + THREAD_SLACK
        ok &= pod_ok
        findings.append(
            f"| consumer-{index} | {rss_first / 1024:.1f} MiB | {rss_last / 1024:.1f} MiB | {growth * 100:+.1f}% "
            f"| {fd_first} / {fd_last} | {th_first} / {th_last} | {'pass' if pod_ok else 'FAIL'} |"
        )
    for name, code, summary in summaries:
        failed = sum(summary.get("failed", {}).values()) if summary else None
        ok &= code == 0 and failed == 0
    return ok, findings


def write(samples, summaries, findings, ok, started_at, took):
    lines = [
        "# Soak",
        "",
        f"`make soak` ({SECONDS} s; `bench/soak.py`), {started_at:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"{platform.machine()}, took {took / 60:.1f} min. **{'Passed' if ok else 'FAILED'}.**",
        "",
        "Two release consumers (defaults) behind HAProxy (`mode tcp`, round robin, `/ready` checks); four generators "
        "at steady open-model rates, no retries:",
        "",
        "| load | sent | succeeded | failed | p99 | exit |",
        "|---|---|---|---|---|---|",
    ]
    for name, code, summary in summaries:
        if summary:
            failed = {k: v for k, v in summary["failed"].items() if v}
            lines.append(f"| {name} | {summary['sent']} | {summary['succeeded']} | {failed or 0} "
                         f"| {summary['latency_ms']['p99']:.1f} ms | {code} |")
        else:
            lines.append(f"| {name} | - | - | no summary | - | {code} |")
    lines += [
        "",
        f"After the warm-up (first {SECONDS // 5} s): the median of resident memory less the memory tasks held at the "
        f"instant, first minute against last (limit +{RSS_GROWTH_LIMIT * 100:.0f}%), and the most file descriptors "
        f"and threads in the first "
        f"minute against the last (descriptors may differ by {FD_SLACK}: connections open at the sampling instant; "
        f"threads by {THREAD_SLACK}: the blocking pool). Then, with no task held before the load and again after "
        f"it, resident memory and the allocator's own count of live heap bytes (independent of the task registry's "
        f"account; at most +{LIVE_SLACK >> 20} MiB left behind).",
        "",
        "| pod | resident less tasks, first minute | last minute | growth | fds first / last minute "
        "| threads first / last minute | |",
        "|---|---|---|---|---|---|---|",
        *findings,
        "",
        "Samples (every minute):",
        "",
        "| t (s) | pod | resident (MiB) | held by tasks (MiB) | fds | threads |",
        "|---|---|---|---|---|---|",
    ]
    for s in samples:
        if s["t"] % 60 < SAMPLE_EVERY:
            lines.append(f"| {s['t']:.0f} | consumer-{s['pod']} | {s['rss_kib'] / 1024:.1f} "
                         f"| {s['task_kib'] / 1024:.0f} | {s['fds']} "
                         f"| {s['threads']} |")
    REPORT.write_text("\n".join(lines) + "\n")


def main():
    for binary in ("consumer", "generator"):
        if not (RELEASE / binary).exists():
            sys.exit(f"error: {RELEASE / binary} is missing: make soak builds it")
    started_at = datetime.now(timezone.utc)
    start = time.monotonic()
    ports = [free_port(), free_port()]
    consumers = start_consumers(ports)
    samples = []
    with tempfile.TemporaryDirectory() as directory:
        haproxy, url = start_haproxy(ports, directory)
        try:
            time.sleep(2.5)  # two health checks: both servers up before the load starts
            idle_before = [idle_figures(p.pid, port) for (p, _), port in zip(consumers, ports)]
            generators = start_generators(url)
            log(f"soak: {len(generators)} generators for {SECONDS} s against {url}")
            begun = time.monotonic()
            while any(p.poll() is None for _, p in generators):
                t = time.monotonic() - begun
                for index, (process, _) in enumerate(consumers):
                    if process.poll() is not None:
                        raise RuntimeError(f"consumer-{index} exited with {process.returncode}")
                    rss, fds, threads = proc_figures(process.pid)
                    task = task_memory_kib(ports[index])
                    samples.append({"t": t, "pod": index, "rss_kib": rss, "task_kib": task, "fds": fds,
                                    "threads": threads})
                if int(t) % 60 < SAMPLE_EVERY:
                    log(f"soak: t={t:4.0f}s " + ", ".join(
                        f"consumer-{s['pod']} {s['rss_kib'] / 1024:.1f} MiB ({s['task_kib'] / 1024:.0f} in tasks) "
                        f"{s['fds']} fds {s['threads']} threads"
                        for s in samples[-len(consumers):]))
                time.sleep(SAMPLE_EVERY)
            summaries = []
            for name, process in generators:
                out, err = process.communicate()
                try:
                    summary = json.loads(out)
                except json.JSONDecodeError:
                    summary = None
                    log(f"soak: {name}: no summary: {err.strip()[:300]}")
                summaries.append((name, process.returncode, summary))
            idle = list(zip(idle_before, [idle_figures(p.pid, port) for (p, _), port in zip(consumers, ports)]))
        finally:
            haproxy.terminate()
            for process, out in consumers:
                process.terminate()
                process.wait(timeout=60)
                out.close()
    ok, findings = verdicts(samples, summaries, idle)
    write(samples, summaries, findings, ok, started_at, time.monotonic() - start)
    for line in findings:
        log(line)
    log(f"soak: {'passed' if ok else 'FAILED'}; wrote {REPORT.relative_to(ROOT)}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
