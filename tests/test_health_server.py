"""The health dashboard's routes, status codes, headers and robustness, in-process and through real waitress."""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from angles.config import load_settings
from angles.health.health_file import snapshot_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTION_TOKEN = "ntn_" + "T" * 32


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def make_snapshot(status="ok", age_s=5.0, **checks) -> dict:
    checks = checks or {
        "cpu": {"label": "CPU", "status": status, "value": "12.3%", "reason": "CPU 12.3%"},
        "disk": {"label": "Disk", "status": "ok", "value": "40.0%", "reason": "disk 40%"},
    }
    return {
        "version": 1,
        "status": status,
        "time": iso(datetime.now(UTC) - timedelta(seconds=age_s)),
        "host": "testhost",
        "duration_s": 0.3,
        "interval_minutes": 5,
        "counts": {"ok": 1, "warning": 0, "critical": 0},
        "checks": checks,
        "metrics": {"cpu_percent": 12.3, "memory_percent": 41.0, "disk_percent": 40.0, "load_5": 0.2},
        "details": {
            "backup": {"time": iso(datetime.now(UTC)), "result": "completed", "commit": "0123456789abcdef"},
            "sync": {"runs_24h": 4, "failed_24h": 1, "last_time": iso(datetime.now(UTC)), "last_status": "completed"},
        },
    }


@pytest.fixture
def health_settings(home):
    return load_settings({"ANGLES_HOME": str(home), "NOTION_TOKEN": NOTION_TOKEN}, dotenv=False)


def write_snapshot(settings, doc) -> None:
    path = snapshot_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))


def write_history(settings, points: int = 30) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    lines = [
        json.dumps(
            {
                "time": iso(now - timedelta(minutes=5 * (points - i))),
                "status": "ok",
                "cpu": 10 + i,
                "memory": 40 + i / 2,
                "disk": 60.0,
                "load": 0.3,
            }
        )
        for i in range(points)
    ]
    (settings.data_dir / "health_history.jsonl").write_text("\n".join(lines) + "\n")


def write_scheduler_state(settings) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    state = {
        "pid": 4242,
        "host": "testhost",
        "started_at": iso(now - timedelta(hours=2)),
        "last_tick": iso(now),
        "leader": True,
        "jobs": {
            "memory_sync": {
                "schedule": "Every 6 hours",
                "last_run": iso(now - timedelta(hours=1)),
                "last_result": "completed",
                "last_duration_s": 12.5,
                "last_success": "2026-11-25T10:00:00Z",
                "next_run": iso(now + timedelta(hours=5)),
                "running": False,
            },
            "backup": {
                "schedule": "Every day at 02:00",
                "last_run": None,
                "last_result": None,
                "last_duration_s": None,
                "last_success": None,
                "next_run": iso(now + timedelta(hours=8)),
                "running": False,
            },
        },
    }
    (settings.data_dir / "scheduler_state.json").write_text(json.dumps(state))


@pytest.fixture
def client(health_settings):
    from angles.health.server import create_app

    return create_app(health_settings).test_client()


def test_liveness_answers_without_a_snapshot(client):
    for path in ("/healthz", "/ping"):
        response = client.get(path)
        assert response.status_code == 200
        assert response.get_json() == {"status": "alive"}


@pytest.mark.parametrize(("status", "code"), [("ok", 200), ("warning", 200), ("critical", 503)])
def test_health_status_code_follows_the_snapshot(client, health_settings, status, code):
    write_snapshot(health_settings, make_snapshot(status))
    response = client.get("/health")
    assert response.status_code == code
    body = response.get_json()
    assert body["status"] == status
    assert body["stale"] is False
    assert body["checks"]["cpu"]["value"] == "12.3%"
    if status == "critical":
        assert "cpu" in body["reason"]
    assert client.get("/").status_code == code


def test_stale_snapshot_is_503_with_a_reason(client, health_settings):
    write_snapshot(health_settings, make_snapshot("ok", age_s=3 * 5 * 60 + 30))
    response = client.get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["stale"] is True
    assert "stale" in body["reason"]
    page = client.get("/")
    assert page.status_code == 503
    assert b"stale (ok)" in page.data


def test_missing_snapshot_is_503_with_the_command_to_run(client):
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json()["status"] == "unknown"
    assert "backend_monitor.py" in response.get_json()["reason"]


@pytest.mark.parametrize(
    "content",
    [
        "",
        "{",
        '{"status": "ok", "time": "2026-11-25T10:00:00Z", "checks": {',
        "[1, 2, 3]",
        '"ok"',
        '{"status": "fine", "time": "x", "checks": {}}',
        '{"status": "ok", "time": 5, "checks": {}}',
        '{"status": "ok", "time": "not a time", "checks": {}}',
        "\x00\xff garbage",
        "x" * 300_000,
    ],
)
def test_corrupt_snapshot_is_503_with_a_reason_on_every_route(client, health_settings, content):
    write_snapshot(health_settings, content)
    health = client.get("/health")
    assert health.status_code == 503
    assert health.get_json()["reason"]
    page = client.get("/")
    assert page.status_code == 503
    assert b"unknown" in page.data or b"stale" in page.data
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert b"angles_health_snapshot_valid 0" in metrics.data or b"angles_health_snapshot_stale 1" in metrics.data


def test_snapshot_changes_are_picked_up_without_restart(client, health_settings):
    write_snapshot(health_settings, make_snapshot("ok"))
    assert client.get("/health").status_code == 200
    time.sleep(0.01)
    write_snapshot(health_settings, make_snapshot("critical"))
    os.utime(snapshot_path(health_settings), ns=(time.time_ns(), time.time_ns()))
    assert client.get("/health").status_code == 503


def test_dashboard_shows_status_checks_chart_jobs_backup_and_sync(client, health_settings):
    write_snapshot(health_settings, make_snapshot("warning"))
    write_history(health_settings)
    write_scheduler_state(health_settings)
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert 'id="overall" class="badge big warning">warning<' in html
    assert 'data-check="cpu"' in html
    assert html.count('class="series"') == 3
    assert "30 samples" in html
    assert "memory_sync" in html and "Every 6 hours" in html and "12.5 s" in html
    assert "<dt>Status</dt><dd>running</dd>" in html
    assert "0123456789ab" in html
    assert "3 of 4 succeeded" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", ""), "no external assets"
    assert "<script src" not in html and '<link rel="stylesheet"' not in html


def test_dashboard_csp_nonce_matches_the_inline_script_and_style(client, health_settings):
    write_snapshot(health_settings, make_snapshot())
    response = client.get("/")
    csp = response.headers["Content-Security-Policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp).group(1)
    assert f'<script nonce="{nonce}">' in response.get_data(as_text=True)
    assert f'<style nonce="{nonce}">' in response.get_data(as_text=True)
    assert client.get("/").headers["Content-Security-Policy"] != csp, "a fresh nonce per response"


def test_dashboard_escapes_text_from_the_snapshot(client, health_settings):
    evil = {"label": "<script>alert(1)</script>", "status": "ok", "value": "<b>", "reason": '"><img src=x>'}
    write_snapshot(health_settings, make_snapshot("ok", cpu=evil))
    html = client.get("/").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in html
    assert "<img src=x>" not in html


METRIC_LINE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? (-?[0-9.e+]+|NaN)$'
)


def test_metrics_are_valid_prometheus_text(client, health_settings):
    write_snapshot(health_settings, make_snapshot("warning"))
    write_scheduler_state(health_settings)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.get_data(as_text=True)
    families = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name = line.split()[2]
            assert name not in families, f"{name} declared twice"
            families.add(name)
        elif not line.startswith("#"):
            assert METRIC_LINE.match(line), line
    assert "angles_health_status 1" in text
    assert 'angles_health_check_status{check="cpu"} 1' in text
    assert "angles_cpu_percent 12.3" in text
    from prometheus_client.parser import text_string_to_metric_families

    expected = datetime(2026, 11, 25, 10, tzinfo=UTC).timestamp()
    successes = {
        sample.labels["job"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "angles_scheduler_job_last_success_timestamp_seconds"
        for sample in family.samples
    }
    assert successes["memory_sync"] == expected
    assert "backup" not in successes


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND"])
def test_every_write_method_is_refused_with_405_json(client, method):
    for path in ("/", "/health", "/metrics", "/nowhere"):
        response = client.open(path, method=method, data=b"x=1")
        assert response.status_code == 405
        assert response.get_json()["error"] == "method not allowed"
        assert response.headers["Allow"] == "GET, HEAD"


def test_head_is_answered_like_get_without_a_body(client, health_settings):
    write_snapshot(health_settings, make_snapshot())
    response = client.head("/health")
    assert response.status_code == 200
    assert response.data == b""


def test_unknown_paths_get_json_404(client):
    response = client.get("/admin/../../etc/passwd")
    assert response.status_code == 404
    assert response.get_json()["error"] == "not found"


def test_security_headers_on_every_response(client, health_settings):
    write_snapshot(health_settings, make_snapshot())
    for response in (
        client.get("/"),
        client.get("/health"),
        client.get("/metrics"),
        client.get("/x"),
        client.post("/health"),
    ):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"


def test_configured_secret_in_the_snapshot_never_leaves_the_server(client, health_settings):
    leaked = make_snapshot(
        "warning",
        notion={
            "label": "Notion",
            "status": "warning",
            "value": "HTTP 401",
            "reason": f"refused {NOTION_TOKEN} and ghp_{'a' * 36}",
        },
    )
    leaked["details"]["backup"]["commit"] = NOTION_TOKEN
    write_snapshot(health_settings, leaked)
    for path in ("/", "/health", "/metrics"):
        body = client.get(path).get_data(as_text=True)
        assert NOTION_TOKEN not in body, path
        assert "ghp_" + "a" * 36 not in body, path


FUZZ_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "BREW"]
FUZZ_PATHS = [
    "/",
    "/health",
    "/healthz",
    "/metrics",
    "/ping",
    "//health",
    "/health/",
    "/static/x.js",
    "/favicon.ico",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/health?x=1&x=2",
    "/metrics?name[]=a",
    "/%ff%fe",
    "/\u00e9t\u00e9",
    "/" + "a" * 3000,
    "/health;jsessionid=1",
    "/?" + "q=" * 500,
    "/index.html",
]
FUZZ_HEADERS = [
    "Accept",
    "Accept-Encoding",
    "Content-Type",
    "Cookie",
    "Range",
    "If-Modified-Since",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "Origin",
    "Referer",
    "User-Agent",
    "Authorization",
    "Transfer-Encoding-X",
]


def random_text(rng: random.Random, size: int) -> str:
    alphabet = string.printable.replace("\r", "").replace("\n", "").replace("\x0b", "").replace("\x0c", "")
    return "".join(rng.choice(alphabet) for _ in range(size))


def random_request(rng: random.Random) -> tuple[str, str, dict, bytes]:
    path = rng.choice(FUZZ_PATHS)
    if rng.random() < 0.4:
        path = "/" + "/".join(
            random_text(rng, rng.randint(0, 12)).replace("?", "").replace("#", "") for _ in range(rng.randint(1, 4))
        )
    if rng.random() < 0.3:
        path += "?" + random_text(rng, rng.randint(1, 40)).replace("#", "")
    headers = {rng.choice(FUZZ_HEADERS): random_text(rng, rng.randint(0, 60)) for _ in range(rng.randint(0, 5))}
    body = os.urandom(rng.randint(0, 2048)) if rng.random() < 0.2 else b""
    # Mostly reads, so the routes themselves (not only the 405 guard) see the odd paths and headers.
    method = rng.choices(["GET", "HEAD", rng.choice(FUZZ_METHODS)], weights=[6, 1, 3])[0]
    return method, path, headers, body


def test_fuzz_2000_random_requests_never_get_a_5xx(client, health_settings):
    write_snapshot(health_settings, make_snapshot("ok"))
    write_history(health_settings)
    write_scheduler_state(health_settings)
    rng = random.Random(20261125)
    for _ in range(2000):
        method, path, headers, body = random_request(rng)
        raw_path, _, query = path.partition("?")
        # The raw path goes straight into the WSGI environ, as a server would pass it, unparsed by the test client.
        overrides = {"PATH_INFO": raw_path, "QUERY_STRING": query, "REQUEST_URI": path}
        response = client.open("/", method=method, headers=headers, data=body, environ_overrides=overrides)
        assert response.status_code < 500, (method, path, headers, response.status_code)
        if response.mimetype == "application/json":
            json.loads(response.data or b"{}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(health_settings, home):
    """tools/health_server.py as an operator starts it, on a free loopback port."""
    write_snapshot(health_settings, make_snapshot("ok"))
    write_history(health_settings)
    write_scheduler_state(health_settings)
    port = free_port()
    config = ("DATABASE_URL", "SUPABASE_", "NOTION_", "OPENAI_", "BACKUP_", "REPO_URL", "GITHUB_", "GIT_", "HEALTH_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(config)}
    env.update(ANGLES_HOME=str(home), NOTION_TOKEN=NOTION_TOKEN)
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tools", "health_server.py"), "--port", str(port)],
        cwd="/",
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"health server exited: {process.stderr.read()}")
            time.sleep(0.05)
    yield port, process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)


def test_real_server_binds_loopback_and_answers_every_route(served):
    port, process = served
    for path, code in (("/", 200), ("/health", 200), ("/healthz", 200), ("/metrics", 200), ("/nope", 404)):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", path)
        response = connection.getresponse()
        assert response.status == code, path
        assert response.getheader("Server") == "angles-health"
        response.read()
        connection.close()
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
    if listening:
        assert listening.split()[3] == f"127.0.0.1:{port}"


def test_real_server_stops_cleanly_on_sigterm(served):
    port, process = served
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 0
    assert "Traceback" not in process.stderr.read()


def test_health_answers_with_200_idle_connections_open(served):
    port, process = served
    idle = []
    try:
        for _ in range(200):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        # Let the server accept every one of them before asking.
        time.sleep(0.5)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        connection.request("GET", "/health")
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["status"] == "ok"
        connection.close()
    finally:
        for sock in idle:
            sock.close()


def test_port_in_use_is_one_clear_line_and_exit_1(run_script):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = run_script("tools/health_server.py", "--port", str(port), timeout=30)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args,env,named",
    [(["--host", "no.such.host.invalid"], {}, "--host"), ([], {"HEALTH_HOST": "no.such.host.invalid"}, "HEALTH_HOST")],
)
def test_an_unresolvable_host_is_one_line_naming_where_it_came_from(run_script, args, env, named):
    done = run_script("tools/health_server.py", *args, "--port", "0", env=env, timeout=30)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert named in done.stderr and "no.such.host.invalid" in done.stderr and "unexpected" not in done.stderr


def raw_exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def test_fuzz_through_waitress_never_gets_a_5xx(served):
    port, _ = served
    rng = random.Random(5000)
    statuses = []
    for i in range(300):
        method, path, headers, body = random_request(rng)
        if i % 3 == 0:
            # Malformed at the HTTP level: broken request lines, bad header syntax, lying lengths.
            payload = rng.choice(
                [
                    f"{method} {path}\r\n\r\n".encode("utf-8", "replace"),
                    f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {rng.randint(-5, 99)}\r\n\r\nabc".encode(
                        "utf-8", "replace"
                    ),
                    f"GET {path} HTTP/9.9\r\n{random_text(rng, 30)}\r\n\r\n".encode("utf-8", "replace"),
                    os.urandom(rng.randint(1, 400)),
                    b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                ]
            )
        else:
            lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
            lines += [f"{k}: {v.strip()}" for k, v in headers.items()]
            lines.append(f"Content-Length: {len(body)}")
            payload = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "replace") + body
        reply = raw_exchange(port, payload)
        if reply:
            match = re.match(rb"HTTP/1\.[01] (\d{3})", reply)
            assert match, reply[:80]
            statuses.append(int(match.group(1)))
    assert statuses and all(code < 500 for code in statuses), sorted(set(statuses))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/health")
    assert connection.getresponse().status == 200, "still serving after the fuzz"


@pytest.mark.browser
def test_dashboard_renders_in_headless_chromium_without_console_errors(served, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port, _ = served
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "age").get_attribute("data-live") == "1")
        assert driver.find_element(By.ID, "overall").text.lower() == "ok"
        assert "Angles AI Universe health" in driver.title
        lines = driver.find_elements(By.CSS_SELECTOR, "svg#chart polyline.series")
        assert len(lines) == 3
        assert all(line.get_attribute("points").count(",") == 30 for line in lines)
        chart = driver.find_element(By.ID, "chart")
        assert chart.size["width"] > 300 and chart.size["height"] > 80
        assert len(driver.find_elements(By.CSS_SELECTOR, "#checks tbody tr")) == 2
        assert "memory_sync" in driver.find_element(By.ID, "jobs").text
        artifacts = os.path.join(ROOT, "test-artifacts")
        os.makedirs(artifacts, exist_ok=True)
        assert driver.save_screenshot(os.path.join(artifacts, "dashboard.png"))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
        assert errors == []
    finally:
        driver.quit()


@pytest.mark.parametrize(
    ("state", "history"),
    [
        ("{not json", "garbage\n{]\n"),
        ('{"jobs": [1, 2], "last_tick": 5, "pid": "x"}', '{"time": 3}\n{"time": "2026-13-45", "cpu": "high"}\n'),
        ('{"jobs": {"a": "b", "c": {"last_duration_s": "long", "running": [1]}}}', '{"time": null}\n'),
        ("[]", ""),
    ],
)
def test_dashboard_survives_corrupt_scheduler_state_and_history(client, health_settings, state, history):
    write_snapshot(health_settings, make_snapshot("ok"))
    health_settings.data_dir.mkdir(parents=True, exist_ok=True)
    (health_settings.data_dir / "scheduler_state.json").write_text(state)
    (health_settings.data_dir / "health_history.jsonl").write_text(history)
    for path in ("/", "/metrics", "/health"):
        assert client.get(path).status_code == 200, path
    assert "no history yet" in client.get("/").get_data(as_text=True)


@pytest.mark.slow
def test_health_never_fails_while_the_monitor_rewrites_the_snapshot(served, health_settings):
    from angles.actions.monitor import run_monitor
    from angles.health.base import Check

    class Steady(Check):
        name, label = "cpu", "CPU"

        def run(self, settings, context):
            return self.result("ok", "1.0%", "steady", {"cpu_percent": 1.0})

    port, _ = served
    stop = time.monotonic() + 4
    codes = []

    def poll():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        while time.monotonic() < stop:
            connection.request("GET", "/health")
            response = connection.getresponse()
            response.read()
            codes.append(response.status)
        connection.close()

    pollers = [threading.Thread(target=poll) for _ in range(3)]
    for thread in pollers:
        thread.start()
    runs = 0
    while time.monotonic() < stop:
        run_monitor(health_settings, checks=[Steady()])
        runs += 1
    for thread in pollers:
        thread.join()
    assert runs > 10 and len(codes) > 100
    assert set(codes) == {200}
