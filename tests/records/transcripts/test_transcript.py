"""The transcript's formats, pure: cues and gaps merged by time, plain text with a
speaker a line, WebVTT with its header, ``HH:MM:SS.mmm`` cue times and voice spans."""

from __future__ import annotations

import re

from proxy.records.transcripts.transcript import CALL_TAKER, CALLER, Cue, Gap, Transcript, timestamp

CUES = (
    Cue(0.0, 3.86, CALL_TAKER, "Thanks for calling, how can I help?"),
    Cue(4.48, 7.96, CALLER, "My internet keeps dropping."),
)


def test_timestamps_are_hours_minutes_seconds_and_milliseconds() -> None:
    assert timestamp(0) == "00:00:00.000"
    assert timestamp(4.4805) == "00:00:04.480"
    assert timestamp(3723.5) == "01:02:03.500"
    assert timestamp(-0.01) == "00:00:00.000"


def test_webvtt_has_its_header_and_a_voiced_cue_a_line_in_time_order() -> None:
    vtt = Transcript((CUES[1], CUES[0])).webvtt()
    assert vtt.startswith("WEBVTT\n\n")
    assert vtt.split("\n\n")[1:] == [
        "00:00:00.000 --> 00:00:03.860\n<v Call taker>Thanks for calling, how can I help?",
        "00:00:04.480 --> 00:00:07.960\n<v Caller>My internet keeps dropping.\n",
    ]
    for line in vtt.splitlines():
        if "-->" in line:
            assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3} --> \d\d:\d\d:\d\d\.\d{3}", line)


def test_plain_text_names_the_speaker_on_each_line() -> None:
    assert Transcript(CUES).text() == (
        "[00:00:00.000] Call taker: Thanks for calling, how can I help?\n"
        "[00:00:04.480] Caller: My internet keeps dropping.\n"
    )


def test_a_gap_is_marked_where_it_falls_with_its_span() -> None:
    transcript = Transcript(CUES, (Gap(4.0, 4.4),))
    assert transcript.text().splitlines()[1] == (
        "[00:00:04.000-00:00:04.400] [no audio: recording interrupted]"
    )
    assert "00:00:04.000 --> 00:00:04.400\n[no audio: recording interrupted]\n" in (
        transcript.webvtt()
    )


def test_cue_text_cannot_end_a_cue_or_inject_markup() -> None:
    vtt = Transcript((Cue(1, 2, CALLER, "a --> b\n\nc <i>&"),)).webvtt()
    assert vtt.endswith("<v Caller>a --&gt; b c &lt;i&gt;&amp;\n")


def test_an_interrupted_recording_is_marked_where_its_audio_stops() -> None:
    transcript = Transcript(CUES, (Gap(7.96),))
    assert transcript.text().splitlines()[-1] == (
        "[00:00:07.960-] [no audio from here: recording interrupted]"
    )
    assert transcript.webvtt().endswith(
        "00:00:07.960 --> 00:00:09.960\n[no audio from here: recording interrupted]\n"
    )
