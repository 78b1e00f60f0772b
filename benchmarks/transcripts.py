"""Transcript benchmark: the word error rate of the shipped engine (faster-whisper, the
published Whisper base model, int8) on the test dialogue against its script, and its
real-time factor (processing time / audio length) on this machine.

Two ways through the same 21.8 s dialogue (``../shared/testdata/audio``):

* ``call``: as recproxy transcribes a recording — the dialogue split into a caller's and
  a call taker's channel (by the README's turn times), each channel's speech found by
  webrtcvad and transcribed on its own, cues merged by time;
* ``mono``: the whole mono file in one pass of the engine (no VAD, no split), the
  figure the issue quotes (about 1.5 s on two threads).

Words are compared lower-cased without punctuation; a digit is read as its word ("457"
as "four five seven"), since Whisper writes numbers either way.  The model is loaded
once (its load time is reported apart); each way runs ``--runs`` times and the median
time is reported.

    .venv/bin/python benchmarks/transcripts.py [--threads 2] [--runs 3] [--json FILE]

Not part of the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from proxy.config import TranscriptsSettings  # noqa: E402
from proxy.records.transcripts.engine import load_engine  # noqa: E402
from proxy.records.transcripts.transcribe import transcribe_recording  # noqa: E402
from tests.records.transcripts.dialogue import (  # noqa: E402
    RATE,
    TURNS,
    mono_dialogue,
    two_channel_dialogue,
    words,
)

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def normalised(text: str) -> list[str]:
    """Words as a WER counts them: lower case, no punctuation, digits spelt out."""
    out: list[str] = []
    for word in words(text.replace("-", " ")):
        out += [DIGITS[int(c)] for c in word] if word.isdigit() else [word]
    return out


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Substitutions + deletions + insertions (the Levenshtein distance over words)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = current
    return previous[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3, choices=range(1, 21))
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()

    started = time.perf_counter()
    engine = load_engine(TranscriptsSettings(threads=args.threads))
    load_s = time.perf_counter() - started
    mono, stereo = mono_dialogue(), two_channel_dialogue()
    seconds = len(mono) / RATE
    reference = normalised(" ".join(text for _, _, text in TURNS))

    def call() -> str:
        transcript = transcribe_recording(stereo, RATE, engine)
        return " ".join(cue.text for cue in transcript.cues)

    def whole() -> str:
        return " ".join(segment.text for segment in engine.transcribe(mono, RATE))

    results: dict[str, object] = {
        "audio_seconds": round(seconds, 2),
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "model_sha256": engine.model_sha256,
        "load_seconds": round(load_s, 2),
    }
    for name, run in (("call", call), ("mono", whole)):
        times, text = [], ""
        for _ in range(args.runs):
            begun = time.perf_counter()
            text = run()
            times.append(time.perf_counter() - begun)
        errors = word_errors(reference, normalised(text))
        median = statistics.median(times)
        results[name] = {
            "seconds": round(median, 2),
            "real_time_factor": round(median / seconds, 3),
            "word_errors": errors,
            "reference_words": len(reference),
            "wer": round(errors / len(reference), 3),
            "text": text,
        }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
