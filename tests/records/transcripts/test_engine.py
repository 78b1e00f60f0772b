"""Real transcription: the installed model (verified, then loaded once for the module)
transcribes the test dialogue split into a caller's and a call taker's channel; the
words of each turn come back under the right speaker at about the right time, through
the playback renderer too (decrypted in memory, no audio file written)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from proxy.config import TranscriptsSettings
from proxy.recording_state import RecordingState
from proxy.records.playback import find_playable, render
from proxy.records.transcripts.engine import FasterWhisperEngine, load_engine
from proxy.records.transcripts.model import PUBLISHED_SHA256
from proxy.records.transcripts.transcribe import (
    pcm_of,
    transcribe_playable,
    transcribe_recording,
)
from proxy.records.transcripts.transcript import Gap, Transcript
from proxy.storage.catalog import SqliteCatalog
from proxy.storage.crypto import load_private_key

from ...e2e.netns import in_private_network
from ..playback_world import PASSPHRASE, catalogue, write_recording
from .dialogue import RATE, two_channel_dialogue, words

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def engine() -> FasterWhisperEngine:
    return load_engine(TranscriptsSettings(threads=2))


@pytest.fixture(scope="module")
def dialogue(engine: FasterWhisperEngine) -> Transcript:
    return transcribe_recording(two_channel_dialogue(), RATE, engine)


def said(transcript: Transcript, speaker: str) -> list[str]:
    return [w for cue in transcript.cues if cue.speaker == speaker for w in words(cue.text)]


def test_the_engine_loaded_the_published_model(engine: FasterWhisperEngine) -> None:
    assert engine.model_sha256 == PUBLISHED_SHA256


def test_each_party_s_words_come_back_under_their_own_name(dialogue: Transcript) -> None:
    caller, taker = said(dialogue, "Caller"), said(dialogue, "Call taker")
    assert {"internet", "dropping", "yesterday", "thank", "help"} <= set(caller), caller
    assert {"calling", "account", "number", "technician", "tomorrow"} <= set(taker), taker
    assert not {"technician", "tomorrow", "account"} & set(caller)
    assert not {"internet", "yesterday"} & set(taker)


def test_cues_are_merged_by_time_and_placed_in_their_turns(dialogue: Transcript) -> None:
    starts = [cue.start for cue in dialogue.cues]
    assert starts == sorted(starts)
    speakers = [cue.speaker for cue in dialogue.cues]
    assert speakers[0] == "Call taker" and "Caller" in speakers
    internet = next(c for c in dialogue.cues if "internet" in words(c.text))
    assert 4.0 <= internet.start <= 5.5 and internet.end <= 8.8
    technician = next(c for c in dialogue.cues if "technician" in words(c.text))
    assert 15.0 <= technician.start <= 19.4
    vtt = dialogue.webvtt()
    assert vtt.startswith("WEBVTT\n") and "<v Caller>" in vtt and "<v Call taker>" in vtt


def test_caller_only_holds_the_caller_s_words_alone(engine: FasterWhisperEngine) -> None:
    caller = two_channel_dialogue()[:, :1]
    gap = Gap(21.81, 30.0)
    transcript = transcribe_recording(caller, RATE, engine, caller_only=True, gaps=[gap])
    assert {cue.speaker for cue in transcript.cues} == {"Caller"}
    assert "internet" in said(transcript, "Caller")
    assert "Call taker" not in transcript.text() + transcript.webvtt()
    assert transcript.text().splitlines()[-1] == (
        "[00:00:21.810-00:00:30.000] [no audio: recording interrupted]"
    )


def test_a_silent_channel_gives_no_words(engine: FasterWhisperEngine) -> None:
    silence = np.zeros((RATE * 5, 2), dtype=np.int16)
    assert transcribe_recording(silence, RATE, engine).cues == ()


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[SqliteCatalog]:
    catalog = await SqliteCatalog(tmp_path / "catalog.sqlite3").open()
    yield catalog
    await catalog.close()


@pytest.mark.parametrize("state", [RecordingState.COMPLETE, RecordingState.INTERRUPTED])
async def test_a_recording_is_transcribed_through_its_rendering_without_a_file(
    engine: FasterWhisperEngine, catalog: SqliteCatalog, tmp_path: Path, state: RecordingState
) -> None:
    written = write_recording(tmp_path)  # caller: the dialogue's first 7.3 s, encrypted
    await catalogue(catalog, written.recording_id, state)
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    transcript = await transcribe_playable(
        await find_playable(catalog, written.recording_id),
        engine,
        caller_only=True,
        recordings_dir=written.recordings,
        private_key=load_private_key(written.private_key, PASSPHRASE.encode()),
    )
    assert transcript.speakers == ("Caller",)
    assert {"thanks", "calling"} <= set(said(transcript, "Caller")), transcript.text()
    gaps = [Gap(len(written.audio) / RATE)] if state is RecordingState.INTERRUPTED else []
    assert list(transcript.gaps) == gaps
    after = {p for p in tmp_path.rglob("*") if p.is_file()}
    assert {p for p in after - before if "catalog.sqlite3" not in p.name} == set()


async def test_pcm_of_a_rendering_is_the_recording_as_heard(
    catalog: SqliteCatalog, tmp_path: Path
) -> None:
    written = write_recording(tmp_path)
    await catalogue(catalog, written.recording_id)
    rendering = await render(
        await find_playable(catalog, written.recording_id),
        recordings_dir=written.recordings,
        private_key=load_private_key(written.private_key, PASSPHRASE.encode()),
    )
    assert np.array_equal(await pcm_of(rendering.chunks(), channels=2), written.audio)


def test_transcribing_needs_no_network(tmp_path: Path) -> None:
    """Load and transcribe in a network namespace with loopback only: nothing is fetched
    (no Hugging Face download, no tokenizer from the hub) and no audio can leave."""
    turn = two_channel_dialogue()[round(4.67 * RATE) : round(8.74 * RATE), 0]
    np.save(tmp_path / "turn.npy", turn)
    script = (
        "import sys, numpy as np\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from proxy.records.transcripts.engine import load_engine\n"
        f"pcm = np.load({str(tmp_path / 'turn.npy')!r})\n"
        f"print(' '.join(s.text for s in load_engine().transcribe(pcm, {RATE})))\n"
    )
    run = in_private_network(
        lambda: subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
    )
    assert run.returncode == 0, run.stderr
    assert {"internet", "yesterday"} <= set(words(run.stdout)), run.stdout
