"""When ``recproxy serve`` starts the records service as its child (``records.child``),
and that a child that cannot even be started is logged, never fatal.  Its start, stop
and death with a real ``serve`` are in ``tests/e2e/test_privilege_boundary.py``."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from proxy import records_child
from proxy.config import Config, RecordingSettings, RecordsSettings


def config(folder: Path, child: str) -> Config:
    return Config(
        recording=RecordingSettings(private_key=folder / "recording.key"),
        records=RecordsSettings(child=child),
    )


@pytest.mark.parametrize(
    ("child", "key_here", "started"),
    [
        ("auto", True, True),
        ("auto", False, False),
        ("on", False, True),
        ("off", True, False),
    ],
)
def test_the_child_is_wanted_as_configured(
    tmp_path: Path, child: str, key_here: bool, started: bool
) -> None:
    if key_here:
        (tmp_path / "recording.key").write_text("only its existence is looked at")
    assert records_child.wanted(config(tmp_path, child)) is started


async def test_a_child_that_cannot_start_is_logged_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(records_child.sys, "executable", str(tmp_path / "no-python"))
    child = records_child.RecordsChild(config(tmp_path, "on"))
    with caplog.at_level(logging.ERROR, logger="recproxy"):
        await child.start()
    assert child.pid is None
    assert "records service could not be started" in caplog.text
    await child.stop()  # nothing to stop: no error either
