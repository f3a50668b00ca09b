#!/usr/bin/env python3
"""Time from exec to the first 200 on /ready, and idle resident memory, of the release consumer (10 runs).

Usage: cargo build --release --bin consumer && python3 scripts/measure-startup.py
"""
import socket
import statistics
import subprocess
import time


def ready(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(100).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


times, rss = [], []
for i in range(10):
    port = 18100 + i
    start = time.perf_counter()
    consumer = subprocess.Popen(
        ["./target/release/consumer", "--bind", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL
    )
    while not ready(port):
        pass
    times.append((time.perf_counter() - start) * 1000)
    time.sleep(1)
    with open(f"/proc/{consumer.pid}/status") as status:
        rss.append(int(next(line for line in status if line.startswith("VmRSS")).split()[1]))
    consumer.terminate()
    consumer.wait()
print(f"exec -> first /ready 200: median {statistics.median(times):.1f} ms (min {min(times):.1f}, max {max(times):.1f})")
print(f"idle resident memory after 1 s: median {statistics.median(rss)} KiB")
