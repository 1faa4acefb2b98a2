#!/usr/bin/env python3
"""The operator's check of the AI path: `python tests/test_gpt5_activation.py` prints PASS/FAIL per check.

With OPENAI_API_KEY it makes a handful of tiny real requests (auth, model available, structured output
valid, analysis stored in a scratch database) and exits 0 only if all pass. Without a key it says the AI
is not configured, checks the offline analyser and exits 0 with an "offline" line. Under pytest the same
checks run against a local OpenAI-compatible server (tests/fakes/openai_server.py).
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from angles import cli  # noqa: E402 - the project root must be importable first


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def main(args, settings) -> int:
    from angles.actions.ai_check import run_ai_check

    result = run_ai_check(settings)
    cli.emit(result, args.json, _text)
    return result["exit_code"]


def _text(result) -> str:
    lines = []
    if not result["configured"]:
        lines.append("AI not configured: OPENAI_API_KEY is not set; checking the offline analyser")
    for check in result["checks"]:
        lines.append(f"{check['status']} {check['name']}: {check['detail']}")
    if not result["configured"]:
        verdict = "offline: decisions are analysed by the offline keyword analyser (model=offline)"
        if not result["passed"]:
            verdict = "FAIL offline analyser check"
        lines.append(verdict)
    elif result["passed"]:
        lines.append(
            f"PASS all AI checks with {result['model']} ({result['requests']} requests, {result['tokens']} tokens)"
        )
    else:
        failed = sum(c["status"] == "FAIL" for c in result["checks"])
        lines.append(f"FAIL {failed} of {len(result['checks'])} AI checks with {result['model']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(cli.run("gpt5_activation", build_parser(), main))


# Under pytest: the same checks against the local OpenAI-compatible server.

import pytest  # noqa: E402

from tests.fakes.openai_server import FakeOpenAI  # noqa: E402

SCRIPT = "tests/test_gpt5_activation.py"


@pytest.fixture
def api():
    with FakeOpenAI() as server:
        yield server


def test_activation_checks_pass_against_an_openai_compatible_server(home, clean_env, api):
    from angles.actions.ai_check import run_ai_check
    from angles.config import load_settings

    clean_env.setenv("OPENAI_API_KEY", api.key)
    clean_env.setenv("OPENAI_BASE_URL", api.base_url)
    result = run_ai_check(load_settings())
    assert [(c["name"], c["status"]) for c in result["checks"]] == [
        ("auth", "PASS"),
        ("model available", "PASS"),
        ("structured output valid", "PASS"),
        ("analysis stored", "PASS"),
    ]
    assert result["exit_code"] == 0
    assert result["tokens"] > 0
    assert not (home / "data" / "angles.db").exists(), "the check must not touch the operator's database"
    for body in api.chat_bodies():
        assert "temperature" not in body and "max_tokens" not in body
        assert body["max_completion_tokens"] > 0
        assert body["response_format"]["json_schema"]["strict"] is True


def test_script_without_key_says_offline_and_exits_0(run_script, home):
    proc = run_script(SCRIPT)
    assert proc.returncode == 0, proc.stderr
    assert "AI not configured" in proc.stdout
    assert "PASS offline analyser" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("offline:")
    assert not (home / "data" / "angles.db").exists()


def test_script_with_a_configured_server_prints_pass_per_check_and_exits_0(run_script, api):
    proc = run_script(SCRIPT, env={"OPENAI_API_KEY": api.key, "OPENAI_BASE_URL": api.base_url})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("auth", "model available", "structured output valid", "analysis stored"):
        assert f"PASS {name}:" in proc.stdout
    assert api.key not in proc.stdout + proc.stderr


def test_script_with_a_wrong_key_fails_without_a_retry_storm(run_script, api):
    wrong = "sk-" + "wrong-0123456789abcdefghij"
    proc = run_script(SCRIPT, env={"OPENAI_API_KEY": wrong, "OPENAI_BASE_URL": api.base_url})
    assert proc.returncode == 3
    assert "FAIL auth: OpenAI refused the API key (401 invalid_api_key)" in proc.stdout
    assert len(api.requests) == 1
    assert wrong not in proc.stdout + proc.stderr


def test_script_with_an_unknown_model_fails_the_model_check(run_script, api):
    proc = run_script(SCRIPT, env={"OPENAI_API_KEY": api.key, "OPENAI_BASE_URL": api.base_url, "OPENAI_MODEL": "gpt-9"})
    assert proc.returncode == 3
    assert "PASS auth:" in proc.stdout
    assert "FAIL model available:" in proc.stdout and "gpt-9" in proc.stdout


def test_script_json_output_lists_every_check(run_script, api):
    proc = run_script(SCRIPT, "--json", env={"OPENAI_API_KEY": api.key, "OPENAI_BASE_URL": api.base_url})
    result = json.loads(proc.stdout)
    assert result["passed"] is True and result["mode"] == "online"
    assert len(result["checks"]) == 4
