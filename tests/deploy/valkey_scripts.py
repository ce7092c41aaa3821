"""Run the production overlay's Valkey start scripts outside a cluster.

The scripts are taken from the rendered ConfigMap (what a pod would run) and get the
environment the rendered StatefulSet gives the container, with the downward API and the
Secret filled in. valkey-cli, valkey-server, getent and sleep are stand-ins on PATH:
valkey-cli answers for the Sentinels a test names, valkey-server keeps a copy of the
config file it is started with, and every stand-in records its arguments, so a test can
check that no password ever reached a command line.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from deploy.manifests import NAMESPACE, Document, config_map_file, one

PASSWORD = 'pa"ss\\word $(x) `y`'  # every character the config file must escape or keep

_STUBS = {
    # Answers with the file named after the host asked (-h), or fails as an unreachable
    # host does. Records whether the password came through the environment.
    "valkey-cli": """
host=
previous=
for arg in "$@"; do
    [ "$previous" = -h ] && host=$arg
    previous=$arg
done
printf '%s\\n' "$*" >>"$STUB_DIR/calls.valkey-cli"
[ "$REDISCLI_AUTH" = "$EXPECTED_PASSWORD" ] || echo "wrong or no REDISCLI_AUTH" >>"$STUB_DIR/errors"
[ -f "$STUB_DIR/answers/$host" ] || exit 1
cat "$STUB_DIR/answers/$host"
""",
    "valkey-server": """
printf '%s\\n' "$*" >>"$STUB_DIR/calls.valkey-server"
cp "$1" "$STUB_DIR/started.conf"
stat -c %a "$1" >"$STUB_DIR/started.mode"
""",
    "getent": """
printf '%s\\n' "$*" >>"$STUB_DIR/calls.getent"
""",
    "sleep": """
printf '%s\\n' "$*" >>"$STUB_DIR/calls.sleep"
""",
}


@dataclass
class StartRun:
    returncode: int
    stderr: str
    config: str | None
    mode: str | None
    calls: dict[str, list[str]]
    errors: str

    def lines(self) -> list[str]:
        assert self.config is not None, self.stderr
        return [line for line in self.config.splitlines() if not line.startswith("#")]

    def directive(self, name: str) -> list[str]:
        """The arguments of every line of the config file that starts with ``name``."""
        words = name.split()
        return [
            " ".join(line.split()[len(words) :])
            for line in self.lines()
            if line.split()[: len(words)] == words
        ]


def valkey_workload(docs: list[Document], name: str) -> tuple[Document, Document, Document]:
    """(StatefulSet, pod spec, its one container) of ``redis`` or ``redis-sentinel``."""
    workload = one(docs, "StatefulSet", name)
    spec = workload["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    return workload, spec, container


def started_script(docs: list[Document], spec: Document, container: Document) -> str:
    """The text of the script a ``sh <file>`` container runs, from its ConfigMap."""
    command = container["command"]
    assert command[0] == "sh" and len(command) == 2, command
    return config_map_file(docs, spec, container, command[1])


def pod_environment(container: Document, pod: str, password: str) -> dict[str, str]:
    """The container's environment in pod ``pod``, as the kubelet builds it: the
    downward API, the Secret's value, and $(VAR) references to variables set earlier."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            value = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                lambda m: env.get(m.group(1), m.group(0)),
                str(item["value"]),
            )
        else:
            source = item["valueFrom"]
            if "fieldRef" in source:
                field = source["fieldRef"]["fieldPath"]
                value = {"metadata.name": pod, "metadata.namespace": NAMESPACE}[field]
            elif "secretKeyRef" in source:
                assert source["secretKeyRef"] == {"name": "chat-redis-auth", "key": "password"}
                value = password
            else:
                raise AssertionError(f"unexpected env source {source}")
        env[item["name"]] = value
    return env


def run_start_script(
    tmp_path: Path,
    docs: list[Document],
    workload_name: str,
    pod: str,
    answers: dict[str, str] | None = None,
    password: str = PASSWORD,
) -> StartRun:
    """Run the start script of ``workload_name`` as pod ``pod`` would. ``answers`` maps a
    Sentinel's host name to what valkey-cli prints for it; the others are unreachable."""
    _, spec, container = valkey_workload(docs, workload_name)
    tmp_path.mkdir(parents=True, exist_ok=True)
    script = tmp_path / "start.sh"
    script.write_text(started_script(docs, spec, container))
    stubs = tmp_path / "stubs"
    bin_dir = stubs / "bin"
    (stubs / "answers").mkdir(parents=True)
    bin_dir.mkdir()
    for name, body in _STUBS.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body.lstrip("\n"))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    for host, answer in (answers or {}).items():
        (stubs / "answers" / host).write_text(answer)
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    env = {
        **pod_environment(container, pod, password),
        # Only the config folder moves: the TLS paths are written into the file, not read.
        "VALKEY_CONFIG_DIR": str(config_dir),
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "STUB_DIR": str(stubs),
        "EXPECTED_PASSWORD": password,
    }
    result = subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    started = stubs / "started.conf"
    mode = stubs / "started.mode"
    errors = stubs / "errors"
    return StartRun(
        returncode=result.returncode,
        stderr=result.stderr,
        config=started.read_text() if started.exists() else None,
        mode=mode.read_text().strip() if mode.exists() else None,
        calls={
            name: (stubs / f"calls.{name}").read_text().splitlines()
            if (stubs / f"calls.{name}").exists()
            else []
            for name in _STUBS
        },
        errors=errors.read_text() if errors.exists() else "",
    )


def sentinel_answer(host: str, port: int = 6379) -> str:
    """What ``valkey-cli --raw SENTINEL get-master-addr-by-name`` prints."""
    return f"{host}\n{port}\n"


def client_sentinels(env: dict[str, str | None]) -> list[str]:
    return [str(item) for item in json.loads(str(env["CHAT_REDIS_SENTINELS"]))]
