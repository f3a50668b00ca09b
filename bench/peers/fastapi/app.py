"""The Python service Surge replaces, as its users run it: FastAPI behind uvicorn, with
prometheus-fastapi-instrumentator exposing /metrics. Serves the same `/` and `/health` bodies as the consumer.

Run by `make bench` (bench/run.py) from a venv it creates: `uvicorn app:app --port PORT`.
"""
import os
import socket
import time
from datetime import datetime, timezone

from fastapi import FastAPI
from prometheus_fastapi_instrumentator import Instrumentator

app = FastAPI(title="surge-consumer (Python peer)")
Instrumentator().instrument(app).expose(app)

POD_NAME = os.environ.get("POD_NAME", socket.gethostname())
STARTED_AT = datetime.now(timezone.utc)
STARTED = time.monotonic()


@app.get("/")
async def welcome():
    return {
        "service": "surge-consumer",
        "message": "POST /process to make work; /metrics carries the signals KEDA scales on",
        "docs": "/docs/",
        "pod": {
            "pod_name": POD_NAME,
            "pod_namespace": os.environ.get("POD_NAMESPACE", "local"),
            "pod_ip": os.environ.get("POD_IP", "127.0.0.1"),
            "node_name": os.environ.get("NODE_NAME", POD_NAME),
            "replica_id": POD_NAME.rsplit("-", 1)[-1],
            "version": "0.1.0",
            "started_at": STARTED_AT.isoformat(),
            "uptime_seconds": time.monotonic() - STARTED,
        },
    }


@app.get("/health")
async def health():
    return {"status": "healthy"}
