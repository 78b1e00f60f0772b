"""config/systemd/recproxy.service: systemd accepts it, and it holds the hardening and
restart policy docs/operations.md promises.

``systemd-analyze`` (Debian package ``systemd``, installed by scripts/setup.sh) is
required: without it this test fails rather than skips, as every missing tool does here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "config" / "systemd" / "recproxy.service"
INSTALLED_AT = "/opt/recproxy/bin/recproxy"


def directives(text: str) -> dict[str, dict[str, list[str]]]:
    """section → key → every value given (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        else:
            key, _, value = line.partition("=")
            current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_the_unit_is_hardened_and_never_restarts_into_a_config_error() -> None:
    service = directives(UNIT.read_text())["Service"]
    expected = {
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "ReadWritePaths": ["/var/lib/recproxy"],  # the data folder, nothing else
        "UMask": ["0077"],
        "CapabilityBoundingSet": ["CAP_NET_BIND_SERVICE"],
        "Restart": ["on-failure"],
        "RestartPreventExitStatus": ["78"],  # proxy.cli.EX_CONFIG
    }
    for key, values in expected.items():
        assert service.get(key) == values, key
    assert "AmbientCapabilities" not in service  # default ports need no privilege
    assert service["User"] != ["root"]
    assert service["ExecStart"][0].startswith(f"{INSTALLED_AT} serve --config /etc/recproxy/")


def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: install Debian's systemd (scripts/setup.sh)"
    # verify checks that ExecStart exists: point it at this environment's recproxy
    here = Path(sys.executable).parent / "recproxy"
    assert here.exists(), here
    unit = tmp_path / "recproxy.service"
    unit.write_text(UNIT.read_text().replace(INSTALLED_AT, str(here)))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    complaints = [line for line in result.stderr.splitlines() if "recproxy.service" in line]
    assert complaints == []


RECORDS_UNIT = ROOT / "config" / "systemd" / "recproxy-records.service"


def test_the_records_unit_runs_records_serve_as_hardened_and_systemd_accepts_it(
    tmp_path: Path,
) -> None:
    service = directives(RECORDS_UNIT.read_text())["Service"]
    for key in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "UMask",
                "ReadWritePaths", "Restart", "RestartPreventExitStatus", "User"):  # fmt: skip
        assert service[key] == directives(UNIT.read_text())["Service"][key], key
    assert service["CapabilityBoundingSet"] == [""]  # not even a low port
    assert service["ExecStart"] == [
        f"{INSTALLED_AT} records serve --config /etc/recproxy/recproxy.toml"
    ]
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: install Debian's systemd (scripts/setup.sh)"
    here = Path(sys.executable).parent / "recproxy"
    unit = tmp_path / "recproxy-records.service"
    unit.write_text(RECORDS_UNIT.read_text().replace(INSTALLED_AT, str(here)))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if unit.name in line] == []
