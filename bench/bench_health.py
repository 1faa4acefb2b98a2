#!/usr/bin/env python3
"""Benchmark /health: wrk throughput and latency, and p99 at a fixed 500 req/s, beside nginx serving the same JSON.

Usage: python bench/bench_health.py [--seconds 10] [--connections 32] [--rate 500] [--out bench/results/health.json]
Needs wrk and nginx (Debian packages); everything binds 127.0.0.1 on free ports and is stopped afterwards.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(port: int, process: subprocess.Popen, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"server exited early: {process.stderr.read() if process.stderr else ''}") from None
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on port {port}")


def make_home(home: Path) -> Path:
    """A home with a real snapshot; CPU and load are left out so a busy machine cannot turn /health into 503s."""
    env = {"ANGLES_HOME": str(home), "HEALTH_DISABLED_CHECKS": "dashboard,cpu,load"}
    subprocess.run(
        [sys.executable, str(ROOT / "backend_monitor.py"), "--quiet"],
        env={**os.environ, **env},
        check=False,
        capture_output=True,
    )
    snapshot = home / "logs" / "active" / "system_health.json"
    if not snapshot.exists():
        raise SystemExit("backend_monitor.py wrote no snapshot")
    return snapshot


def start_dashboard(home: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "ANGLES_HOME": str(home), "HEALTH_INTERVAL_MINUTES": "1000"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tools" / "health_server.py"), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(port, process)
    return process


def start_nginx(workdir: Path, snapshot: Path, port: int) -> subprocess.Popen:
    static = workdir / "static"
    static.mkdir()
    shutil.copy(snapshot, static / "health.json")
    os.chmod(workdir, 0o755)
    os.chmod(static, 0o755)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = workdir / "nginx.conf"
    conf.write_text(f"""{user}
daemon off;
worker_processes 2;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location = /health {{ default_type application/json; alias {static}/health.json; }}
    }}
}}
""")
    process = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    wait_for(port, process)
    return process


def run_wrk(url: str, seconds: int, connections: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if match:
            value, unit = float(match.group(1)), match.group(2)
            result[f"p{pct}_ms"] = round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 3)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    return result


def run_fixed_rate(port: int, rate: int, seconds: int, workers: int = 16) -> dict:
    """Open-loop load at a fixed rate; latency counts from the scheduled send time (no coordinated omission)."""
    total = rate * seconds
    start = time.monotonic() + 0.2
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(total))

    def worker():
        nonlocal errors
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in counter:
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                connection.request("GET", "/health")
                response = connection.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                ok = False
            elapsed = (time.monotonic() - due) * 1000
            with lock:
                latencies.append(elapsed)
                errors += 0 if ok else 1
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))], 3)

    return {
        "rate": rate,
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "max_ms": round(latencies[-1], 3),
    }


def measure(seconds: int, connections: int, rate: int) -> dict:
    """Run wrk and the fixed-rate generator against the dashboard and nginx serving the same snapshot."""
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (apt-get install {tool if tool == 'wrk' else 'nginx-light'})")
    results = {"cpus": os.cpu_count(), "seconds": seconds, "connections": connections}
    with tempfile.TemporaryDirectory(prefix="bench-health-") as tmp:
        tmp = Path(tmp)
        snapshot = make_home(tmp / "home")
        dash_port, nginx_port = free_port(), free_port()
        dashboard = start_dashboard(tmp / "home", dash_port)
        (tmp / "nginx").mkdir()
        nginx = start_nginx(tmp / "nginx", snapshot, nginx_port)
        try:
            for name, port in (("dashboard", dash_port), ("nginx_static", nginx_port)):
                url = f"http://127.0.0.1:{port}/health"
                results[name] = {
                    "wrk": run_wrk(url, seconds, connections),
                    "fixed_rate": run_fixed_rate(port, rate, seconds),
                }
        finally:
            for process in (dashboard, nginx):
                process.terminate()
                process.wait(timeout=10)
    return results


def bench_health(ctx) -> list:
    from bench.harness import Row

    r = measure(10, 32, 500)
    dash, nginx = r["dashboard"], r["nginx_static"]
    throughput = dash["wrk"]["requests_per_s"]
    p99 = dash["fixed_rate"]["p99_ms"]
    return [
        Row(
            "/health throughput under wrk, 10 s, 32 connections",
            round(throughput),
            "req/s",
            "reported",
            None,
            baseline=round(nginx["wrk"]["requests_per_s"]),
            ratio=round(throughput / nginx["wrk"]["requests_per_s"], 3),
            note=f"wrk p99 {dash['wrk'].get('p99_ms', 0):.1f} ms vs nginx {nginx['wrk'].get('p99_ms', 0):.1f} ms",
        ),
        Row(
            "/health p99 at a fixed 500 req/s",
            round(p99, 2),
            "ms",
            "≤ 25 ms",
            p99 <= 25,
            baseline=round(nginx["fixed_rate"]["p99_ms"], 2),
            ratio=round(p99 / max(nginx["fixed_rate"]["p99_ms"], 0.01), 2),
            note=f"{dash['fixed_rate']['errors']} errors",
        ),
    ]


BENCHMARKS = {"health": bench_health}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "health.json"))
    args = parser.parse_args()
    try:
        results = measure(args.seconds, args.connections, args.rate)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"{'server':<14} {'wrk req/s':>10} {'wrk p50 ms':>11} {'wrk p99 ms':>11} "
        f"{'@' + str(args.rate) + '/s p50':>12} {'p99 ms':>8} {'errors':>7}"
    )
    for name in ("dashboard", "nginx_static"):
        w, f = results[name]["wrk"], results[name]["fixed_rate"]
        print(
            f"{name:<14} {w['requests_per_s']:>10.0f} {w.get('p50_ms', 0):>11.2f} {w.get('p99_ms', 0):>11.2f} "
            f"{f['p50_ms']:>12.2f} {f['p99_ms']:>8.2f} {f['errors']:>7}"
        )
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
