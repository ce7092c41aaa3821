"""Print the README's configuration table from the settings classes.

    python scripts/settings_table.py            # print it
    python scripts/settings_table.py --write    # replace it in README.md

Every CHAT_ variable, its default and what it does, with the services that read it.
tests/test_readme.py fails when the README's table and the code disagree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from chat_auth.settings import AuthSettings
from chat_gateway.settings import GatewaySettings
from chat_history.settings import HistorySettings
from chat_shared.settings import ChatSettings

SERVICES: dict[str, type[ChatSettings]] = {
    "auth": AuthSettings,
    "history": HistorySettings,
    "gateway": GatewaySettings,
}

# Read by the launcher (chat_shared.serve), not by a settings class.
LAUNCHER = [
    ("CHAT_HOST", "127.0.0.1", "Address each service binds (0.0.0.0 in containers)."),
    ("CHAT_PORT", "8000 / 8001 / 8002", "Port of the service (gateway / auth / history)."),
    ("CHAT_SHUTDOWN_GRACE_SECONDS", "20", "How long a stopping service lets sockets drain."),
    ("CHAT_TRUST_PROXY_HEADERS", "false", "Take client addresses from X-Forwarded-For."),
    ("CHAT_FORWARDED_ALLOW_IPS", "127.0.0.1", "Proxies trusted for X-Forwarded-For."),
    ("CHAT_SECRETS_DIR", "/run/secrets/chat", "Folder of secret files named like the variables."),
]


def _default(value: Any) -> str:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return json.dumps(value) if value else "(empty)"
    if value is None or value == "":
        return "(empty)"
    return str(value)


def rows() -> list[tuple[str, str, str, str]]:
    found: dict[str, list[Any]] = {}
    for service, cls in SERVICES.items():
        for name, field in cls.model_fields.items():
            env = f"CHAT_{name.upper()}"
            entry = found.setdefault(env, [set(), field])
            entry[0].add(service)
    table = []
    for env, (services, field) in sorted(found.items()):
        default = field.get_default(call_default_factory=True)
        if env == "CHAT_SERVICE_NAME":
            default = "auth / history / gateway"
        who = "all" if len(services) == len(SERVICES) else ", ".join(sorted(services))
        table.append((env, _default(default), who, (field.description or "").replace("|", "\\|")))
    for env, default, description in LAUNCHER:
        table.append((env, default, "all", description))
    return table


def markdown() -> str:
    lines = ["| variable | default | read by | what it does |", "| --- | --- | --- | --- |"]
    lines += [f"| `{env}` | `{default}` | {who} | {text} |" for env, default, who, text in rows()]
    return "\n".join(lines)


README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- settings-table:start -->", "<!-- settings-table:end -->"


def readme_table(text: str) -> str:
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def write_readme() -> None:
    text = README.read_text()
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    README.write_text(f"{before}{START}\n{markdown()}\n{END}{after}")


if __name__ == "__main__":
    if "--write" in sys.argv:
        write_readme()
    else:
        print(markdown())
