#!/usr/bin/env python3
"""Runs the real clients installed by scripts/real-clients against the mock API
(scripts/real-clients-mock.py) in each non-interactive mode and scenario, and writes each
capture to tests/fixtures/real-clients/<client>-<mode>-<scenario>/ as `stdout`, `stderr`
and `meta.toml` (the form tests/fixtures/real-clients/README.md describes).

Usage: real-clients-capture.py CLIENTS_DIR FIXTURES_DIR WORK_DIR MOCK_URL [FILTER]
FILTER, substrings separated by commas, keeps only the captures whose folder name
contains one of them.

Every client gets a throwaway home under WORK_DIR, a dummy key, its telemetry, update
checks and other nonessential traffic switched off, and few, short retries; its proxy
variables point at the mock, so a request it makes anywhere else is logged there as
unexpected instead of leaving the machine. Python 3 standard library only.
"""

import concurrent.futures
import datetime as dt
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
spec = importlib.util.spec_from_file_location("mock", os.path.join(HERE, "real-clients-mock.py"))
mock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mock)

UTC = dt.timezone.utc
PROMPT = "Summarise the item on stdin."
ITEM = b"Ticket 4711: the export button does nothing.\n"
RUN_TIMEOUT = 40
GEMINI_MODEL = "gemini-2.5-pro"
WORKER_ZONE = "Europe/Warsaw"
# A client that announces a wait beyond this is stopped, as drainctl stops it (MAX_CLIENT_WAIT).
MAX_CLIENT_WAIT_MS = 60_000
ANNOUNCED = re.compile(r"Retrying after (\d+)ms")

CLIENTS = {
    "claude": {"name": "Claude Code", "vendor": "anthropic", "modes": {
        "text": (["-p"], "-p (text)"),
        "json": (["-p", "--output-format", "json"], "-p --output-format json"),
        "stream-json": (["-p", "--output-format", "stream-json", "--verbose"],
                        "-p --output-format stream-json --verbose"),
    }},
    "codex": {"name": "codex-cli", "vendor": "openai", "modes": {
        "text": (["exec"], "exec"),
        "json": (["exec", "--json"], "exec --json"),
    }},
    "gemini": {"name": "gemini-cli", "vendor": "gemini", "modes": {
        "text": (["-p"], "-p (text)"),
        "json": (["--output-format", "json", "-p"], "-p --output-format json"),
        "stream-json": (["--output-format", "stream-json", "-p"], "-p --output-format stream-json"),
    }},
}

CLAUDE_SUBSCRIPTION = {"subscription-limit", "weekly-limit", "allowed-warning", "server-limiting"}
COMMON = ["success", "success-quoting-a-limit", "rate-limit-reset", "rate-limit-no-reset",
          "rate-limit-then-success", "server-500-then-success", "credit", "auth-invalid", "permission-denied", "model-not-found",
          "server-500", "server-502", "server-503", "server-529"]
SCENARIOS = {
    "anthropic": COMMON + ["allowed-warning", "subscription-limit", "weekly-limit", "server-limiting",
                           "workspace-limit"],
    "openai": COMMON + ["subscription-limit", "weekly-limit"],
    "gemini": COMMON + ["subscription-limit", "capacity-exhausted", "long-retry"],
}

# What the vendor meant by each scenario: the verdict the classifier must reach.
MEANT = {
    "success": "success",
    "success-quoting-a-limit": "success",
    "allowed-warning": "success",
    "rate-limit-then-success": "success",
    "server-500-then-success": "success",
    "rate-limit-reset": "quota_hit",
    "rate-limit-no-reset": "quota_hit",
    "subscription-limit": "quota_hit",
    "weekly-limit": "quota_hit",
    "workspace-limit": "quota_hit",
    "capacity-exhausted": "quota_hit",
    "server-limiting": "server_error",
    "long-retry": "quota_hit",
    "credit": "needs_attention",
    "auth-invalid": "needs_attention",
    "permission-denied": "needs_attention",
    "model-not-found": "needs_attention",
    "server-500": "server_error",
    "server-502": "server_error",
    "server-503": "server_error",
    "server-529": "server_error",
}


# The reset as the mock wrote it (`per minute`: at the next minute): a capture that shows
# none of these lost the reset on the way (it is a quota hit without one).
RESET_MARKERS = [b"per minute", b"1.662s", b"2.5s", b"33415", b"8h44m7s", b"240s", b"regain access on", b"resets ",
                 b"try again at", b'"resetsAt"']


def client_bin(clients_dir, client):
    return os.path.join(clients_dir, "node_modules", ".bin", client)


def version_of(clients_dir, client):
    package = {"claude": "@anthropic-ai/claude-code", "codex": "@openai/codex",
               "gemini": "@google/gemini-cli"}[client]
    with open(os.path.join(clients_dir, "node_modules", package, "package.json"), encoding="utf-8") as f:
        return json.load(f)["version"]


def base_env(home, mock_url):
    proxy = mock_url.rstrip("/")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "XDG_CONFIG_HOME": os.path.join(home, ".config"),
        "XDG_CACHE_HOME": os.path.join(home, ".cache"),
        "XDG_DATA_HOME": os.path.join(home, ".local/share"),
        "XDG_STATE_HOME": os.path.join(home, ".local/state"),
        "TMPDIR": os.path.join(home, "tmp"),
        "TZ": "UTC",
        "LANG": "C.UTF-8",
        "NO_COLOR": "1",
        "TERM": "dumb",
        "CI": "true",
        # Anything not meant for the mock goes to the mock, which logs it as unexpected.
        "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy, "ALL_PROXY": proxy,
        "http_proxy": proxy, "https_proxy": proxy, "all_proxy": proxy,
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    }
    for folder in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "TMPDIR"):
        os.makedirs(env[folder], exist_ok=True)
    return env


def client_env(client, scenario, home, base_url, mock_url):
    """The environment (and files under `home`) that point `client` at `base_url`."""
    env = base_env(home, mock_url)
    if client == "claude":
        env.update({
            "ANTHROPIC_BASE_URL": base_url,
            # A subscriber's token for the subscription limits (only a subscriber sees
            # them), an API key for the rest.
            **({"CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat01-mock"}
               if scenario.removeprefix("e2e-") in CLAUDE_SUBSCRIPTION
               else {"ANTHROPIC_API_KEY": "sk-ant-mock-key"}),
            "CLAUDE_CONFIG_DIR": os.path.join(home, ".claude"),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_UPDATES": "1",
            "DISABLE_BUG_COMMAND": "1",
            "DISABLE_INSTALLATION_CHECKS": "1",
            "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
            "CLAUDE_CODE_MAX_RETRIES": "1",
            "API_TIMEOUT_MS": "20000",
        })
    elif client == "codex":
        codex_home = os.path.join(home, ".codex")
        os.makedirs(codex_home, exist_ok=True)
        with open(os.path.join(codex_home, "config.toml"), "w", encoding="utf-8") as f:
            f.write(f'''model = "gpt-5-codex"
model_provider = "mock"
approval_policy = "never"
sandbox_mode = "read-only"
check_for_update_on_startup = false

[model_providers.mock]
name = "mock"
base_url = "{base_url}/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
request_max_retries = 2
stream_max_retries = 2
stream_idle_timeout_ms = 20000

[analytics]
enabled = false

[feedback]
enabled = false

[otel]
exporter = "none"

[history]
persistence = "none"

[features]
plugins = false
''')
        env.update({"CODEX_HOME": codex_home, "OPENAI_API_KEY": "sk-mock-key"})
    else:
        settings_dir = os.path.join(home, ".gemini")
        os.makedirs(settings_dir, exist_ok=True)
        settings = {
            "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
            "privacy": {"usageStatisticsEnabled": False},
            "telemetry": {"enabled": False},
            "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False,
                        "maxAttempts": 2},
            "ide": {"enabled": False},
        }
        with open(os.path.join(settings_dir, "settings.json"), "w", encoding="utf-8") as f:
            json.dump(settings, f)
        env.update({
            "GEMINI_API_KEY": "mock-key",
            "GOOGLE_GEMINI_BASE_URL": base_url,
            "GEMINI_CLI_NO_RELAUNCH": "true",
            "GEMINI_TELEMETRY_ENABLED": "false",
        })
    return env


def run_client(argv, env, cwd):
    """Runs one client; stops it when it announces a wait drainctl would not sit through."""
    started = time.monotonic()
    stderr_path = os.path.join(cwd, "stderr")
    with open(os.path.join(cwd, "stdout"), "wb") as out, open(stderr_path, "wb") as err, \
            open(os.path.join(cwd, "stdin"), "wb+") as stdin:
        stdin.write(ITEM)
        stdin.seek(0)
        process = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err, env=env, cwd=cwd,
                                   start_new_session=True)
        announced = None
        while process.poll() is None:
            time.sleep(0.2)
            with open(stderr_path, "rb") as seen:
                for wait in ANNOUNCED.findall(seen.read().decode("utf-8", "replace")):
                    if int(wait) > MAX_CLIENT_WAIT_MS:
                        announced = wait + "ms"
            if announced or time.monotonic() - started > RUN_TIMEOUT:
                os.killpg(process.pid, 9)
                process.wait()
                return None, announced, time.monotonic() - started
        return process.returncode, None, time.monotonic() - started


def toml_string(value):
    return json.dumps(value, ensure_ascii=False)


def capture(job):
    clients_dir, fixtures_dir, work_dir, mock_url, client, mode, scenario, version = job
    info = CLIENTS[client]
    args, mode_label = info["modes"][mode]
    name = f"{client}-{mode}-{scenario}"
    run_dir = os.path.join(work_dir, "runs", name)
    shutil.rmtree(run_dir, ignore_errors=True)
    home = os.path.join(run_dir, "home")
    os.makedirs(home)
    base_url = f"{mock_url.rstrip('/')}/{scenario}/{name}"
    env = client_env(client, scenario, home, base_url, mock_url)
    # The subscription limits are printed in the worker's own zone.
    zone = WORKER_ZONE if scenario in ("subscription-limit", "weekly-limit") else "UTC"
    env["TZ"] = zone
    now = dt.datetime.now(UTC).replace(microsecond=0)
    argv = [client_bin(clients_dir, client)] + args
    if client == "codex":
        argv += ["--skip-git-repo-check", PROMPT]
    elif client == "gemini":
        # A named model: no routing request before the real one.
        argv = argv[:1] + ["-m", GEMINI_MODEL] + argv[1:] + [PROMPT]
    else:
        argv += [PROMPT]
    code, announced, took = run_client(argv, env, run_dir)
    planned = mock.plan(info["vendor"], scenario, now)
    expect = MEANT[scenario]
    meta = [f"# captured by scripts/real-clients: scenario {scenario}",
            f"client = {toml_string(info['name'])}",
            f"version = {toml_string(version)}",
            f"mode = {toml_string(mode_label)}"]
    if code is None:
        meta.append("# stopped while the client waited" if announced else "# stopped: the client ran too long")
    else:
        meta.append(f"exit_code = {code}")
    if code == 0 and scenario == "rate-limit-then-success":
        expect = "success"
    elif scenario == "rate-limit-then-success":
        # The client gave up on the first 429 instead of retrying it.
        expect = "quota_hit"
    # Written once the client's exit has settled what the scenario is expected to be.
    meta += [f"now = {toml_string(mock.rfc3339(now))}", f"zone = {toml_string(zone)}", f"expect = {toml_string(expect)}"]
    output = b""
    for stream in ("stdout", "stderr"):
        with open(os.path.join(run_dir, stream), "rb") as f:
            output += f.read()
    stated = any(marker in output for marker in RESET_MARKERS)
    if expect == "quota_hit" and planned.get("reset") and stated:
        reset = planned["reset"]
        text = reset.isoformat().replace("+00:00", "Z")
        meta.append(f"reset = {toml_string(text)}")
    if announced:
        meta.append(f"announced_wait = {toml_string(announced)}")
    target = os.path.join(fixtures_dir, name)
    shutil.rmtree(target, ignore_errors=True)
    os.makedirs(target)
    for stream in ("stdout", "stderr"):
        # The folder the kit ran in is this machine's business, not the fixture's.
        with open(os.path.join(run_dir, stream), "rb") as f:
            captured = f.read().replace(REPO.encode(), b"/srv/drainctl")
        with open(os.path.join(target, stream), "wb") as f:
            f.write(captured)
    with open(os.path.join(target, "meta.toml"), "w", encoding="utf-8") as f:
        f.write("\n".join(meta) + "\n")
    return name, code, announced, took


def worker(argv):
    """`--worker CLIENTS_DIR CLIENT MODE SCENARIO HOME MOCK_URL RUN`: prints the command and
    environment that run CLIENT as a drain's worker against the mock, as JSON."""
    clients_dir, client, mode, scenario, home, mock_url, run = argv
    os.makedirs(home, exist_ok=True)
    base_url = f"{mock_url.rstrip('/')}/{scenario}/{run}"
    env = client_env(client, scenario, home, base_url, mock_url)
    command = [client_bin(os.path.abspath(clients_dir), client)] + CLIENTS[client]["modes"][mode][0]
    if client == "codex":
        command += ["--skip-git-repo-check", PROMPT]
    elif client == "gemini":
        command = command[:1] + ["-m", GEMINI_MODEL] + command[1:] + [PROMPT]
    else:
        command += [PROMPT]
    print(json.dumps({"command": command, "env": env}))
    return 0


def main():
    if sys.argv[1:2] == ["--worker"]:
        return worker(sys.argv[2:])
    clients_dir, fixtures_dir, work_dir = (os.path.abspath(path) for path in sys.argv[1:4])
    mock_url = sys.argv[4]
    only = sys.argv[5] if len(sys.argv) > 5 else ""
    jobs = []
    for client, info in CLIENTS.items():
        version = version_of(clients_dir, client)
        for mode in info["modes"]:
            for scenario in SCENARIOS[info["vendor"]]:
                if any(part in f"{client}-{mode}-{scenario}" for part in only.split(",")):
                    jobs.append((clients_dir, fixtures_dir, work_dir, mock_url, client, mode, scenario, version))
    workers = int(os.environ.get("REAL_CLIENTS_JOBS", "3"))
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for name, code, announced, took in pool.map(capture, jobs):
            state = f"exit {code}" if code is not None else (f"stopped on {announced}" if announced else "timed out")
            print(f"  {name}: {state} ({took:.1f}s)", flush=True)
            failed += code is None and not announced
    print(f"{len(jobs)} captures written to {fixtures_dir}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
