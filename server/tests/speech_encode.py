"""Encodes a WAV recording as a browser would send it, for the speech tests.

Usage: speech_encode.py IN.wav OUT.{webm,ogg,mp3}

WebM and Ogg carry Opus (what MediaRecorder writes in Chrome and Firefox), MP3 is MP3.
Runs in .cache/speech-venv, whose PyAV bundles the encoders.
"""

import sys

import av

CODECS = {"webm": ("libopus", 48000), "ogg": ("libopus", 48000), "mp3": ("libmp3lame", 44100)}


def main() -> None:
    source, target = sys.argv[1], sys.argv[2]
    codec, rate = CODECS[target.rsplit(".", 1)[-1]]
    with av.open(source) as inp, av.open(target, "w") as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        resampler = av.AudioResampler(format=stream.format.name, layout="mono", rate=rate)
        for frame in inp.decode(audio=0):
            for converted in resampler.resample(frame):
                for packet in stream.encode(converted):
                    out.mux(packet)
        for converted in resampler.resample(None):
            for packet in stream.encode(converted):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


if __name__ == "__main__":
    main()
