"""Records governance end to end (issue 14): two real SIPp calls recorded by ``recproxy
serve``; one exported with a reason and put on hold with ``recproxy holds place``;
``recproxy audit show --json`` holds the export's reason and the hold; then ``recproxy
retention sweep --as-of`` 37 months on, against the running proxy's catalog: the unheld
recording is crypto-shredded (key and files gone, listed ``deleted`` with when and why,
export refused), the held one is untouched and still exports, and ``recproxy audit
verify`` finds the chain intact."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime

import pytest

from proxy.config import add_months

from .conftest import E2e
from .proxy_process import (
    export_wav,
    list_recordings,
    proxy_env,
    query,
    recproxy_command,
    run_cli,
)

pytestmark = pytest.mark.sipp


def test_a_sweep_37_months_on_deletes_the_unheld_recording_and_keeps_the_held(
    e2e: E2e,
) -> None:
    proxy = e2e.proxy()
    taker = e2e.call_taker(ring_ms=300, calls=2)
    caller = e2e.caller(pre_audio_ms=2500, hold_ms=1500, calls=2, rate=2, limit=2)
    caller.expect_success(timeout=40)
    taker.expect_success(timeout=10)
    proxy.wait_idle(timeout=10)

    rows = list_recordings(e2e.config_path)
    assert len(rows) == 2 and {row["state"] for row in rows} == {"complete"}, rows
    for row in rows:  # each dated for deletion 36 months after it ended, when it ended
        ended = query(proxy.catalog_path, "SELECT ended_at FROM recordings WHERE id = ?", row["id"])
        end = datetime.fromtimestamp(ended[0]["ended_at"] / 1000, UTC)
        assert row["expires_at"] == add_months(end, 36).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z"
        )
    held, unheld = str(rows[0]["id"]), str(rows[1]["id"])
    export_wav(e2e.config_path, held, e2e.folder / "held.wav")
    hold_id = run_cli(
        e2e.config_path, "holds", "place", held, "--kind", "complaint", "--reference", "C-77",
        "--by", "records officer",
    ).strip()  # fmt: skip
    audit = [json.loads(line) for line in run_cli(e2e.config_path, "audit", "show", "--json")
             .splitlines() if line.strip()]  # fmt: skip
    exports = [(e["object"], e["reason"]) for e in audit if e["action"] == "custodian_export"]
    assert exports == [(f"recording:{held}", "recproxy end-to-end test")]
    placed = [e for e in audit if e["action"] == "hold.place"]
    assert [(e["object"], e["actor"]) for e in placed] == [(f"recording:{held}", "records officer")]
    assert hold_id in str(placed[0]["detail"])

    later = add_months(datetime.now(UTC), 37).isoformat()
    swept = run_cli(e2e.config_path, "retention", "sweep", "--as-of", later)
    assert swept.startswith("deleted 1, kept 1 held, 0 not yet expired"), swept

    after = {str(row["id"]): row for row in list_recordings(e2e.config_path)}
    assert after[unheld]["state"] == "deleted"
    assert str(after[unheld]["deleted_reason"]).startswith("retention: expired ")
    assert after[unheld]["deleted_at"] is not None
    assert not (e2e.folder / "data" / "recordings" / unheld).exists()
    assert after[held]["state"] == "complete" and after[held]["deleted_at"] is None
    export_wav(e2e.config_path, held, e2e.folder / "held-again.wav")  # still readable

    refused = subprocess.run(
        recproxy_command("export", unheld, "--format", "wav", "--out",
                         str(e2e.folder / "gone.wav"), "--reason", "SAR 12",
                         "--config", str(e2e.config_path)),
        cwd=e2e.config_path.parent, env=proxy_env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert refused.returncode == 1
    assert f"recording {unheld} was deleted " in refused.stderr
    assert "(retention: expired " in refused.stderr and "Traceback" not in refused.stderr
    assert not (e2e.folder / "gone.wav").exists()
    deletes = query(
        proxy.catalog_path, "SELECT object FROM audit_log WHERE action = 'recording.delete'"
    )
    assert [row["object"] for row in deletes] == [f"recording:{unheld}"]
    assert proxy.health()["ok"] is True  # the running proxy never noticed
    verified = run_cli(e2e.config_path, "audit", "verify")
    assert verified.startswith("audit chain intact: "), verified
