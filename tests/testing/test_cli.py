"""`callresilience fake-servicenow`: starts, serves on 127.0.0.1 and stops on a signal."""

from __future__ import annotations

import argparse
import asyncio
import os
import selectors
import signal
import subprocess
import sys

import httpx
import pytest

from callresilience.cli import build_parser, main

from ._helpers import eventually

START_TIMEOUT = 20.0


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """Read the first line the process prints, waiting at most `timeout` seconds."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError("the command printed nothing in time")
    return process.stdout.readline().strip()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_command_serves_until_a_signal_and_exits_0(sig: signal.Signals) -> None:
    """The command prints its URL, answers with basic auth, and exits 0 on SIGTERM or SIGINT."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "callresilience",
            "fake-servicenow",
            "--port",
            "0",
            "--user",
            "admin",
            "--password",
            "pw",
            "--seed",
            "3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = read_line(process, START_TIMEOUT)
        assert base_url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=base_url, timeout=10) as client:
            assert client.get("/api/now/table/sys_user").status_code == 401
            users = client.get("/api/now/table/sys_user", auth=("admin", "pw"))
        assert users.status_code == 200
        assert len(users.json()["result"]) == 3
        process.send_signal(sig)
        assert process.wait(timeout=START_TIMEOUT) == 0
        assert process.stderr is not None
        assert "pw" not in process.stderr.read()
    finally:
        if process.poll() is None:  # pragma: no cover (only when the test fails)
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_user_without_password_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """--user without --password exits 2 with a message."""
    assert main(["fake-servicenow", "--user", "u"]) == 2
    assert "both --user and --password" in capsys.readouterr().err


@pytest.mark.anyio
async def test_serve_runs_in_process_until_sigterm(capsys: pytest.CaptureFixture[str]) -> None:
    """The command's coroutine serves a lenient fake and returns 0 when SIGTERM arrives."""
    from callresilience.cli import _fake

    args = _fake_args(["fake-servicenow", "--lenient-tables"])
    task = asyncio.ensure_future(_fake._serve(args))
    printed: list[str] = []

    def url_printed() -> bool:
        printed.append(capsys.readouterr().out)
        return "http://127.0.0.1:" in "".join(printed)

    await eventually(url_printed, seconds=START_TIMEOUT)
    base_url = "".join(printed).strip()
    async with httpx.AsyncClient(base_url=base_url) as client:
        assert (await client.post("/api/now/table/u_anything", json={})).status_code == 201
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, START_TIMEOUT) == 0


@pytest.mark.anyio
async def test_port_in_use_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """A port that cannot be bound exits 1 with the reason on stderr."""
    from callresilience.cli import _fake
    from callresilience.testing import FakeServiceNow

    async with FakeServiceNow().serve() as base_url:
        port = base_url.rsplit(":", 1)[1]
        assert await _fake._serve(_fake_args(["fake-servicenow", "--port", port])) == 1
    assert "cannot listen on 127.0.0.1" in capsys.readouterr().err


@pytest.mark.anyio
async def test_missing_uvicorn_is_reported(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without uvicorn the command exits 1 and says which extra to install."""
    from callresilience.cli import _fake

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert await _fake._serve(_fake_args(["fake-servicenow"])) == 1
    assert "callresilience[sim]" in capsys.readouterr().err


def _fake_args(argv: list[str]) -> argparse.Namespace:
    """Parse a command line the way `main()` does."""
    return build_parser().parse_args(argv)
