#!/usr/bin/env python3
"""`make bench`: the binaries that ship, measured against peers in the same run, written to bench/RESULTS.md.

Servers run pinned to core 0 and every load client to core 1, so they never share a core. Variants alternate
round by round (drift in the machine hits all of them alike) and each figure is the median of ROUNDS rounds.
A server's ratios to the bare handler (requests per second, and requests per CPU-second of the server itself) come
from the two loaded side by side, at the same instant on the same core, each round: the medians of the rounds' own
ratios, printed with their range whatever the host's noise; other rows whose rounds spread more than NOISY of their
median say "noisy" instead of a figure.
`BENCH_ONLY=servers` runs the server rows alone and writes nothing.

1. GET / and /health: the release `consumer` with its defaults (stdout to a file, as a pod's goes to a pipe),
   the consumer with `--access-log all`, a bare actix-web handler (`bare-actix`) and the Python service Surge
   replaces (FastAPI + uvicorn + prometheus-fastapi-instrumentator, in a venv this script makes), under wrk.
2. Exec to first 200 on /health, idle and loaded resident memory of the consumer and the Python peer.
3. The `generator` against wrk and oha on the bare handler, with keep-alive and with a new connection per request.
4. Async `POST /process` acceptance with the memory queue and the Redis queue (a real `redis-server` with its
   append-only file synced on every write, as deployed, and every second), each at the same backlog depth: accepted
   tasks a second and the p99 of a 200. `BENCH_ONLY=acceptance` runs this part alone and writes nothing.

Needs: the release binaries (make bench builds them), wrk, taskset; installs oha with cargo and the Python peer
with pip when missing.
"""
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
VENV = ROOT / "target" / "bench-venv"
RESULTS = ROOT / "bench" / "RESULTS.md"
README = ROOT / "README.md"
LOGS = ROOT / "target" / "bench-logs"

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
# The servers' table: the machine's speed moves by a tenth over seconds (the bare handler's CPU per request ranged
# 8.2-9.7 us over five 5 s rounds), so many short rounds, each pair seconds apart, give steadier medians of ratios.
SERVER_ROUNDS = int(os.environ.get("BENCH_SERVER_ROUNDS", "15"))
SERVER_SECONDS = int(os.environ.get("BENCH_SERVER_SECONDS", "2"))
CONNECTIONS = 32
NOISY = 0.15
SERVER_CORE, CLIENT_CORE = "0", "1"
BARE = "bare actix-web handler"


def log(message):
    print(message, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port, path="/health"):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
            return s.recv(100).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


class Server:
    """A server process pinned to the server core; `ready_ms` is exec to its first 200 on /health."""

    def __init__(self, name, argv, env=None, cwd=None):
        self.name, self.port = name, free_port()
        LOGS.mkdir(parents=True, exist_ok=True)
        self.stdout = open(LOGS / f"{name}.log", "ab")
        environment = dict(os.environ, PORT=str(self.port), **(env or {}))
        argv = [a.replace("{port}", str(self.port)) for a in argv]
        started = time.perf_counter()
        self.process = subprocess.Popen(
            ["taskset", "-c", SERVER_CORE, *argv], stdout=self.stdout, stderr=subprocess.STDOUT, env=environment, cwd=cwd
        )
        deadline = time.monotonic() + 30
        while not answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start; see {LOGS / (name + '.log')}")
            time.sleep(0.0005)
        self.ready_ms = (time.perf_counter() - started) * 1000
        self.url = f"http://127.0.0.1:{self.port}"

    def status(self, field):
        """A field of /proc/PID/status in bytes (VmRSS, VmHWM); the process tree's main process only."""
        pid = self.server_pid()
        text = Path(f"/proc/{pid}/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) * 1024

    def server_pid(self):
        # taskset execs the program, so the pid is the server's own.
        return self.process.pid

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.stdout.close()


def client(argv):
    out = subprocess.run(["taskset", "-c", CLIENT_CORE, *argv], capture_output=True, text=True, timeout=SECONDS + 60)
    if out.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed: {out.stderr.strip()[:300]}")
    return out.stdout


def wrk_command(seconds):
    """wrk as every table runs it: one thread, CONNECTIONS connections, for `seconds`."""
    return ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s"]


def wrk(url, reuse=True, seconds=SECONDS):
    argv = wrk_command(seconds) + ["--latency"]
    if not reuse:
        argv += ["-H", "Connection: close"]
    text = client(argv + [url])
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", text)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {"rate": rate, "p99_ms": float(p99.group(1)) * scale, "non2xx": int(errors.group(1)) if errors else 0}


def oha(url, reuse=True):
    argv = [oha_binary(), "--no-tui", "--output-format", "json", "-z", f"{SECONDS}s", "-c", str(CONNECTIONS)]
    if not reuse:
        argv.append("--disable-keepalive")
    report = json.loads(client(argv + [url]))
    return {"rate": report["summary"]["requestsPerSec"]}


def generator(url, reuse=True):
    argv = [str(RELEASE / "generator"), "--url", url.rsplit("/", 1)[0], "--path", "/" + url.rsplit("/", 1)[1]]
    argv += ["--duration", f"{SECONDS}s", "--concurrency", str(CONNECTIONS), "--probes", "1", "--output", "json"]
    if not reuse:
        argv.append("--no-connection-reuse")
    report = json.loads(client(argv))
    return {"rate": report["rate_achieved"]}


def oha_binary():
    found = shutil.which("oha") or str(Path.home() / ".cargo" / "bin" / "oha")
    if not Path(found).exists():
        log("installing oha (cargo install oha --locked)")
        subprocess.run(["cargo", "install", "oha", "--locked", "--quiet"], check=True)
    return found


def python_peer():
    """The venv with the pinned Python peer; made on first use."""
    python = VENV / "bin" / "python"
    requirements = ROOT / "bench" / "peers" / "fastapi" / "requirements.txt"
    stamp = VENV / "requirements.txt"
    if not stamp.exists() or stamp.read_text() != requirements.read_text():
        log("installing the Python peer into target/bench-venv (pip)")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], check=True)
        shutil.copy(requirements, stamp)
    return python


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def median_of(samples, key):
    values = [s[key] for s in samples]
    middle = statistics.median(values)
    spread = (max(values) - min(values)) / middle if middle else 0.0
    return middle, spread


def servers():
    python = python_peer()
    peer_dir = ROOT / "bench" / "peers" / "fastapi"
    return {
        BARE: (str(RELEASE / "bare-actix"),),
        "consumer (defaults)": (str(RELEASE / "consumer"), "--port", "{port}"),
        "consumer --access-log all": (str(RELEASE / "consumer"), "--port", "{port}", "--access-log", "all"),
        "Python peer (FastAPI + uvicorn)": (str(python), "-m", "uvicorn", "app:app", "--port", "{port}"),
    }, peer_dir


def cpu_seconds(pid):
    """CPU time of every thread of `pid`, in seconds: the scheduler's nanoseconds (`schedstat`), not 10 ms ticks."""
    total = 0
    for thread in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((thread / "schedstat").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            pass  # a thread that ended between the listing and the read
    return total / 1e9


def side_by_side(server, bare, path):
    """`server` and the bare handler loaded at the same time, each by its own wrk on the client core: the two share
    the server core at the same instant, so the machine's drift from second to second hits both alike. Returns each
    one's requests per second and CPU microseconds per request."""
    argv = ["taskset", "-c", CLIENT_CORE, *wrk_command(SERVER_SECONDS)]
    pids = (server.server_pid(), bare.server_pid())
    before = [cpu_seconds(pid) for pid in pids]
    runs = [subprocess.Popen(argv + [s.url + path], stdout=subprocess.PIPE, text=True) for s in (server, bare)]
    outputs = [run.communicate(timeout=SERVER_SECONDS + 60)[0] for run in runs]
    measured = []
    for output, pid, cpu_before in zip(outputs, pids, before):
        requests = int(re.search(r"(\d+) requests in", output).group(1))
        if requests == 0 or re.search(r"Non-2xx or 3xx responses", output):
            raise SystemExit(f"side by side on {path}: a server answered nothing or non-2xx:\n{output}")
        measured.append({"rate": requests / SERVER_SECONDS, "cpu_us": (cpu_seconds(pid) - cpu_before) / requests * 1e6})
    return measured


def throughput(table):
    """Every server started once and warmed; then each round runs every server on each path alone (its requests per
    second, p99 and CPU per request), then each beside the bare handler (`side_by_side`: the ratios). Alone, the two
    ran seconds apart, and this host's speed moves by a tenth in seconds; side by side it cannot move between them.
    Each run also reads the server's own CPU time: with two cores, wrk's core saturates too, and requests per second
    then say as much about the client as the server."""
    specs, peer_dir = servers()
    names = list(specs)
    running = {}
    for name in names:
        cwd = peer_dir if name.startswith("Python") else None
        running[name] = Server(slug(name), list(specs[name]), cwd=cwd)
    samples = {(name, path): [] for name in specs for path in ("/", "/health")}
    # Each (server, bare handler) run side by side: the ratios to the bare handler come from these.
    pairs = {(name, path): [] for name in specs for path in ("/", "/health") if name != BARE}
    try:
        for name in names:
            for path in ("/", "/health"):
                client(wrk_command(1) + [running[name].url + path])
        for round_ in range(1, SERVER_ROUNDS + 1):
            # Each round starts with a different server, so no variant always follows the same neighbour.
            order = names[round_ % len(names):] + names[:round_ % len(names)]
            for path in ("/", "/health"):
                for name in order:
                    server = running[name]
                    before = cpu_seconds(server.server_pid())
                    result = wrk(server.url + path, seconds=SERVER_SECONDS)
                    served = result["rate"] * SERVER_SECONDS
                    result["cpu_us"] = (cpu_seconds(server.server_pid()) - before) / served * 1e6
                    samples[(name, path)].append(result)
                    if result["non2xx"]:
                        raise SystemExit(f"{name} answered {result['non2xx']} non-2xx responses on {path}")
                for name in order:
                    if name != BARE:
                        pairs[(name, path)].append(side_by_side(running[name], running[BARE], path))
            log(f"  round {round_}/{SERVER_ROUNDS}: GET / " + ", ".join(
                f"{name.split(' (')[0]} {samples[(name, '/')][-1]['rate']:,.0f}/s "
                f"{samples[(name, '/')][-1]['cpu_us']:.1f} us" for name in names))
        peak_rss = {name: running[name].status("VmHWM") for name in names}
    finally:
        for server in running.values():
            server.stop()
    for path in ("/", "/health"):
        bare = samples[(BARE, path)]
        for name in specs:
            rate, spread = median_of(samples[(name, path)], "rate")
            p99, _ = median_of(samples[(name, path)], "p99_ms")
            cpu_us, _ = median_of(samples[(name, path)], "cpu_us")
            # p99 against the bare handler's in the same round; throughput and CPU against the bare handler's at the
            # same instant (side by side), where the machine's speed cannot move between the two.
            p99_ratios = [m["p99_ms"] / b["p99_ms"] for m, b in zip(samples[(name, path)], bare)]
            together = pairs.get((name, path), [])
            ratios = [m["rate"] / b["rate"] for m, b in together] or [1.0]
            cpu_ratios = [b["cpu_us"] / m["cpu_us"] for m, b in together] or [1.0]
            table.append({
                "what": f"GET {path}: {name}", "rate": rate, "spread": spread, "p99_ms": p99, "cpu_us": cpu_us,
                "ratio": statistics.median(ratios), "ratio_range": (min(ratios), max(ratios)),
                "p99_ratio": statistics.median(p99_ratios), "p99_range": (min(p99_ratios), max(p99_ratios)),
                "cpu_ratio": statistics.median(cpu_ratios), "cpu_range": (min(cpu_ratios), max(cpu_ratios)),
            })
    return peak_rss


def startup_and_memory(peak_rss):
    specs, peer_dir = servers()
    rows = []
    for name in ("consumer (defaults)", "Python peer (FastAPI + uvicorn)"):
        cwd = peer_dir if name.startswith("Python") else None
        ready, idle = [], []
        for i in range(5):
            server = Server(f"{slug(name)}-start-{i}", list(specs[name]), cwd=cwd)
            ready.append(server.ready_ms)
            for _ in range(10):
                answers(server.port, "/")
            time.sleep(0.5)
            idle.append(server.status("VmRSS"))
            server.stop()
        rows.append({"what": name, "ready_ms": statistics.median(ready), "idle_mib": statistics.median(idle) / 2**20,
                     "loaded_mib": peak_rss[name] / 2**20})
    return rows


def generators(table):
    bare = Server("bare-generators", [str(RELEASE / "bare-actix")])
    try:
        for reuse in (True, False):
            mode = "keep-alive" if reuse else "new connection per request"
            samples = {"wrk": [], "oha": [], "generator": []}
            for _ in range(ROUNDS):
                samples["wrk"].append(wrk(bare.url + "/health", reuse))
                samples["oha"].append(oha(bare.url + "/health", reuse))
                samples["generator"].append(generator(bare.url + "/health", reuse))
            rates = {tool: median_of(s, "rate") for tool, s in samples.items()}
            log(f"  {mode}: " + ", ".join(f"{tool} {rate:,.0f}" for tool, (rate, _) in rates.items()))
            for tool, (rate, spread) in rates.items():
                row = {"what": f"{mode}: {tool}", "rate": rate, "spread": spread}
                if tool == "generator":
                    row["vs_wrk"] = rate / rates["wrk"][0]
                    row["vs_oha"] = rate / rates["oha"][0]
                table.append(row)
    finally:
        bare.stop()


ACCEPT_SECONDS = 2
ACCEPT_QUERY = "/process?async_mode=true&cpu_intensity=1&memory_size=0&duration=1"
# Tasks waiting before the measurement, in every queue alike: the queue component's cap (1000) is the depth a full
# shared backlog reaches, and the memory queue's forecast walks whatever it holds.
ACCEPT_DEPTH = 1000
# Held back while the backlog is measured: a pod whose CPU capacity starts almost nothing drains almost nothing.
ACCEPT_ENV = {"CPU_WORK": "simulate", "CPU_CAPACITY": "0.1", "MAX_TASKS": "1", "QUEUE_CAPACITY": "100000",
              "LOG_FORMAT": "json"}
# (label, Redis appendfsync or None for the memory queue)
ACCEPT_MODES = [("memory queue (the pod's backlog)", None),
                ("Redis queue, append-only file synced on every write (as deployed)", "always"),
                ("Redis queue, append-only file synced every second", "everysec")]


def start_redis(fsync, directory):
    port = free_port()
    process = subprocess.Popen(["taskset", "-c", SERVER_CORE, "redis-server", "--port", str(port), "--save", "",
                                "--appendonly", "yes", "--appendfsync", fsync, "--dir", str(directory)],
                               stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() != "PONG":
        if time.monotonic() > deadline:
            raise SystemExit("redis-server did not start")
        time.sleep(0.05)
    return process, port


def async_acceptance(table):
    """Accepted async tasks a second and the p99 of a 200, for the memory queue and for Redis with its append-only
    file synced on every write (as the queue component runs it) and every second: what a 200 costs when it means "in
    this pod's memory", "in the shared stream, on disk" and "in the shared stream, on disk within a second". Each
    queue holds ACCEPT_DEPTH waiting tasks when the measurement starts and a pod that starts almost none; only 200s
    count; a fresh server (and Redis) per round."""
    script = LOGS / "post.lua"
    LOGS.mkdir(parents=True, exist_ok=True)
    script.write_text('wrk.method = "POST"\n')
    samples = {label: [] for label, _ in ACCEPT_MODES}
    for round_ in range(1, ROUNDS + 1):
        order = ACCEPT_MODES if round_ % 2 else list(reversed(ACCEPT_MODES))
        for label, fsync in order:
            redis, env = None, dict(ACCEPT_ENV)
            with tempfile.TemporaryDirectory() as directory:
                if fsync:
                    redis, port = start_redis(fsync, directory)
                    env["QUEUE_URL"] = f"redis://127.0.0.1:{port}"
                server = Server(f"accept-{fsync or 'memory'}-{round_}", [str(RELEASE / "consumer")], env=env)
                try:
                    for _ in range(ACCEPT_DEPTH):
                        urllib.request.urlopen(urllib.request.Request(server.url + ACCEPT_QUERY, method="POST"),
                                               timeout=10).read()
                    argv = wrk_command(ACCEPT_SECONDS) + ["--latency", "-s", str(script)]
                    text = client(argv + [server.url + ACCEPT_QUERY])
                    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
                    refused = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
                    accepted = rate - (int(refused.group(1)) / ACCEPT_SECONDS if refused else 0)
                    p99 = re.search(r"\s99%\s+([\d.]+)(us|ms|s)\b", text)
                    p99_ms = float(p99.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)] if p99 else 0.0
                    samples[label].append({"rate": accepted, "p99_ms": p99_ms})
                finally:
                    server.stop()
                    if redis:
                        redis.kill()
                        redis.wait()
        log(f"  round {round_}/{ROUNDS}: " + ", ".join(
            f"{fsync or 'memory'} {samples[label][-1]['rate']:,.0f}/s p99 {samples[label][-1]['p99_ms']:.2f} ms"
            for label, fsync in ACCEPT_MODES))
    memory_rate = None
    for label, fsync in ACCEPT_MODES:
        rate, spread = median_of(samples[label], "rate")
        p99_ms, _ = median_of(samples[label], "p99_ms")
        memory_rate = memory_rate or rate
        table.append({"what": label, "rate": rate, "spread": spread, "ratio": rate / memory_rate, "p99_ms": p99_ms})


def figure(row, value):
    return f"noisy (rounds spread {row['spread']:.0%})" if row["spread"] > NOISY else value


def write(server_rows, memory_rows, generator_rows, accept_rows, seconds_taken):
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    tool_versions = {
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0],
        "oha": subprocess.run([oha_binary(), "--version"], capture_output=True, text=True).stdout.strip(),
    }
    servers_table = ["| server, path | req/s alone (rounds' spread) | vs bare actix, side by side (rounds' range) | requests per CPU-second vs bare, side by side (rounds' range) | p99 alone | p99 vs bare (rounds' range) |",
                     "|---|---:|---:|---:|---:|---:|"]
    for row in server_rows:
        (low, high), (p99_low, p99_high), (cpu_low, cpu_high) = row["ratio_range"], row["p99_range"], row["cpu_range"]
        servers_table.append(f"| {row['what']} | {row['rate']:,.0f} ({row['spread']:.0%}) | "
                             f"{row['ratio']:.2f}x ({low:.2f}-{high:.2f}) | "
                             f"{row['cpu_ratio']:.2f}x ({cpu_low:.2f}-{cpu_high:.2f}); {row['cpu_us']:.1f} us each | "
                             f"{row['p99_ms']:.2f} ms | {row['p99_ratio']:.2f}x ({p99_low:.2f}-{p99_high:.2f}) |")
    memory_table = ["| service | exec to first 200 | idle RSS | peak RSS under load |", "|---|---:|---:|---:|"]
    for row in memory_rows:
        memory_table.append(
            f"| {row['what']} | {row['ready_ms']:.1f} ms | {row['idle_mib']:.1f} MiB | {row['loaded_mib']:.1f} MiB |")
    generator_table = ["| client | req/s | generator vs wrk | generator vs oha |", "|---|---:|---:|---:|"]
    for row in generator_rows:
        vs_wrk = figure(row, f"{row['vs_wrk']:.2f}x") if "vs_wrk" in row else ""
        vs_oha = figure(row, f"{row['vs_oha']:.2f}x") if "vs_oha" in row else ""
        rate = figure(row, f"{row['rate']:,.0f}")
        generator_table.append(f"| {row['what']} | {rate} | {vs_wrk} | {vs_oha} |")
    accept_table = ["| queue | accepted tasks/s | vs memory | p99 of a 200 |", "|---|---:|---:|---:|"]
    for row in accept_rows:
        accept_table.append(
            f"| {row['what']} | {figure(row, format(row['rate'], ',.0f'))} | "
            f"{figure(row, format(row['ratio'], '.2f') + 'x')} | {row['p99_ms']:.2f} ms |")
    summary = "\n".join(servers_table)
    text = f"""# Benchmark results

Written by `make bench` (`bench/run.py`) on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC in {seconds_taken / 60:.1f} min.
Machine: {os.cpu_count()} cores ({cpu}), Linux {platform.release()}; {tool_versions['wrk']}; {tool_versions['oha']}.
Method: servers pinned to core {SERVER_CORE} (`taskset`, so one actix worker each; uvicorn one process), clients to
core {CLIENT_CORE}; {ROUNDS} rounds of {SECONDS} s per figure ({SERVER_ROUNDS} of {SERVER_SECONDS} s for the servers), variants alternating within
each round, medians shown. The servers run for the whole table (started once, warmed). Each round measures every
server alone (its req/s, p99 and CPU per request: the scheduler's CPU time of all its threads over the run, divided
by the requests served), then each beside the bare handler: both loaded at once, each by its own wrk, sharing the
server core at the same instant, so this host's drift (a tenth within seconds) cannot fall between them. The ratios
to the bare handler (requests, and requests per CPU-second) are the medians of those side-by-side rounds' own
ratios, the p99 ratio of the rounds alone, each with the rounds' range beside it, so a noisy host still gives a figure
and shows how far to trust it. Requests per CPU-second is the server's own cost: on two cores wrk saturates its core as
well, so requests per second are bounded by the client as much as by the server; the other tables say "noisy" for a figure whose rounds spread more than {NOISY:.0%} of the median. Release binaries with their defaults, stdout to a file. The Python peer runs as its
users run it (`uvicorn app:app`, its access log on).

## Servers: `wrk -t1 -c{CONNECTIONS} -d{SERVER_SECONDS}s --latency URL`

{summary}

## Start and memory (the same processes; 5 starts each)

{chr(10).join(memory_table)}

Exec to first 200 on `/health`, polled every 0.5 ms. Idle RSS: `VmRSS` after ten requests. Peak: `VmHWM` over the
server rounds above.

## Load generators against the bare handler's `/health`, `-c{CONNECTIONS}`, {SECONDS} s

{chr(10).join(generator_table)}

## Async `POST /process` acceptance: memory queue against the Redis queue, at the same depth

{chr(10).join(accept_table)}

`wrk -t1 -c{CONNECTIONS} -d{ACCEPT_SECONDS}s --latency -s post.lua 'URL{ACCEPT_QUERY}'` against the release consumer
with {" ".join(f"{k}={v}" for k, v in ACCEPT_ENV.items())} (a pod that starts almost nothing, so the backlog holds),
each queue filled with {ACCEPT_DEPTH} waiting tasks first; Redis is a fresh `redis-server` with its append-only file
on, on the server core, synced as the row says. Only 200s are counted. A Redis 200 is one round trip to a script that
checks the idempotency key and the shared cap, writes the task's record and adds it to the stream; with `always`,
Redis writes it to disk before answering, so an answered task survives a crash of Redis's node; with `everysec` up to
a second of answered tasks can be lost that way (nothing on a crash of Redis alone). The memory queue answers
`estimated_start` by playing the pod's schedule forward over its whole backlog; a pod's crash loses all it holds.

Commands: `wrk -t1 -c{CONNECTIONS} -d{SECONDS}s [-H 'Connection: close']`, `oha --no-tui -z {SECONDS}s -c {CONNECTIONS}
[--disable-keepalive]`, `generator --url URL --path /health --duration {SECONDS}s --concurrency {CONNECTIONS} --probes 1
[--no-connection-reuse]`.
"""
    RESULTS.write_text(text)
    readme = README.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in readme and end in readme:
        head, rest = readme.split(start, 1)
        _, tail = rest.split(end, 1)
        quoted = f"{start}\n{summary}\n\nFrom [`bench/RESULTS.md`](bench/RESULTS.md) ({datetime.now(timezone.utc):%Y-%m-%d}, {os.cpu_count()} cores; `make bench`).\n{end}"
        README.write_text(head + quoted + tail)


def main():
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("make bench needs two cores: servers and clients on different ones")
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing (scripts/install-tools.sh installs wrk)")
    started = time.monotonic()
    server_rows, generator_rows, accept_rows = [], [], []
    if os.environ.get("BENCH_ONLY") == "servers":
        # The server rows alone, printed and not written.
        throughput(server_rows)
        for row in server_rows:
            log(f"{row['what']}: {row['rate']:,.0f}/s, {row['ratio']:.3f}x bare ({row['ratio_range'][0]:.3f}-"
                f"{row['ratio_range'][1]:.3f}); per CPU-second {row['cpu_ratio']:.3f}x ({row['cpu_range'][0]:.3f}-"
                f"{row['cpu_range'][1]:.3f}), {row['cpu_us']:.2f} us each")
        return
    if os.environ.get("BENCH_ONLY") == "acceptance":
        # The acceptance rows alone, printed and not written (RESULTS.md is always a whole run).
        async_acceptance(accept_rows)
        for row in accept_rows:
            log(f"{row['what']}: {row['rate']:,.0f}/s ({row['ratio']:.2f}x memory, spread {row['spread']:.0%}), "
                f"p99 {row['p99_ms']:.2f} ms")
        return
    log(f"== servers: {SERVER_ROUNDS} rounds x {SERVER_SECONDS} s per path and server")
    peak = throughput(server_rows)
    log("== start and memory")
    memory_rows = startup_and_memory(peak)
    log(f"== load generators: {ROUNDS} rounds x {SECONDS} s per tool and mode")
    generators(generator_rows)
    log(f"== async acceptance: {ROUNDS} rounds x {ACCEPT_SECONDS} s per queue")
    async_acceptance(accept_rows)
    write(server_rows, memory_rows, generator_rows, accept_rows, time.monotonic() - started)
    log(RESULTS.read_text())


if __name__ == "__main__":
    main()
