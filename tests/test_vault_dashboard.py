"""The dashboard's /decisions search and /decisions/<id> pages: read-only, escaped, and working in a real browser."""

from __future__ import annotations

import os

import pytest

from angles.engines import vault
from angles.storage import migrations, open_storage
from tests.test_health_server import ROOT, health_settings, served  # noqa: F401 - fixtures used below

SCRIPT = "<script>alert('x')</script>"


@pytest.fixture
def seeded(health_settings):  # noqa: F811 - the imported fixture
    """A vault holding a hostile-looking decision, a supersede chain with a reason, a link and an edit."""
    with open_storage(health_settings) as storage:
        migrations.migrate(storage)
        hostile = vault.record(
            storage, {"text": f"Render {SCRIPT} as text in the database page", "tags": "<b>x</b>"}, source="cli"
        )["id"]
        old = vault.record(storage, {"text": "Deploy the database with Ansible"}, source="cli")["id"]
        moved = vault.supersede(
            storage, old, new_fields={"text": "Deploy the database with Terraform"}, reason="<i>drift</i>", source="cli"
        )
        vault.link(storage, hostile, moved["new_id"], "relates_to", source="cli")
        vault.edit(storage, hostile, {"comment": "<img src=x onerror=alert(1)>"}, source="agent:claude")
    return {"hostile": hostile, "old": old, "new": moved["new_id"]}


@pytest.fixture
def client(health_settings):  # noqa: F811 - the imported fixture
    from angles.health.server import create_app

    return create_app(health_settings).test_client()


def test_search_page_lists_matches_with_marked_snippets_and_escapes_stored_text(client, seeded):
    response = client.get("/decisions", query_string={"q": "database"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert SCRIPT not in html and "&lt;script&gt;" in html
    assert "<mark>database</mark>" in html
    assert seeded["hostile"] in html and seeded["new"] in html and seeded["old"] not in html
    assert "form-action 'self'" in response.headers["Content-Security-Policy"]
    everything = client.get("/decisions", query_string={"q": "database", "all": "1"}).get_data(as_text=True)
    assert seeded["old"] in everything and "superseded" in everything


def test_search_page_shows_bad_queries_as_one_line_and_an_empty_box_without_error(client, seeded):
    assert client.get("/decisions").status_code == 200
    bad = client.get("/decisions", query_string={"q": '"'})
    assert bad.status_code == 400 and "no words to look for" in bad.get_data(as_text=True)
    odd = client.get("/decisions", query_string={"q": "NEAR( * : <script>", "type": "nonsense"})
    assert odd.status_code == 400 and "type &#39;nonsense&#39; is unknown" in odd.get_data(as_text=True)


def test_decision_page_shows_history_chain_reason_and_links_escaped(client, seeded):
    page = client.get(f"/decisions/{seeded['hostile'][:8]}").get_data(as_text=True)
    assert SCRIPT not in page and "<img src=x" not in page and "<b>x</b>" not in page
    assert "agent:claude" in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert f"/decisions/{seeded['new']}" in page and "relates_to" in page
    chain = client.get(f"/decisions/{seeded['new']}").get_data(as_text=True)
    assert f"/decisions/{seeded['old']}" in chain and "&lt;i&gt;drift&lt;/i&gt;" in chain
    assert client.get("/decisions/ffffffff").status_code == 404
    assert client.get("/decisions/abc").status_code == 400


def test_the_vault_pages_are_read_only(client, seeded):
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)("/decisions", data={"q": "x"}).status_code == 405
        assert getattr(client, method)(f"/decisions/{seeded['old']}").status_code == 405


def test_the_vault_pages_without_a_database_say_so(client):
    response = client.get("/decisions", query_string={"q": "anything"})
    assert response.status_code == 503 and "Traceback" not in response.get_data(as_text=True)


@pytest.mark.browser
def test_decisions_search_works_in_headless_chromium(seeded, served, tmp_path):  # noqa: F811 - the imported fixture
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
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.set_page_load_timeout(30)
        driver.get(f"http://127.0.0.1:{port}/decisions")
        box = driver.find_element(By.NAME, "q")
        box.send_keys('database -terraform "as text"')
        box.submit()
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "results"))
        items = driver.find_elements(By.CSS_SELECTOR, "#results li")
        assert [i.get_attribute("data-id") for i in items] == [seeded["hostile"]]
        assert SCRIPT in items[0].text  # shown as text, not run
        assert {m.text.lower() for m in items[0].find_elements(By.TAG_NAME, "mark")} == {"database", "as text"}
        items[0].find_element(By.TAG_NAME, "a").click()
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "history"))
        assert SCRIPT in driver.find_element(By.ID, "text").text
        assert "agent:claude" in driver.find_element(By.ID, "history").text
        assert "relates_to" in driver.find_element(By.ID, "links").text
        artifacts = os.path.join(ROOT, "test-artifacts")
        os.makedirs(artifacts, exist_ok=True)
        assert driver.save_screenshot(os.path.join(artifacts, "decision.png"))
        errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
        assert errors == []
    finally:
        driver.quit()
