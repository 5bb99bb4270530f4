"""Stream a wav file through a BSPC model, 20 ms at a time, printing phones as they appear.

    python examples/stream_wav.py model.bspc speech.wav

The model must carry its feature configuration in METADATA (``rtmobile export`` writes it);
the chunks could as well come from a microphone.
"""

import sys

from rtmobile_rt import Session
from rtmobile_rt.transcribe import StreamingRecognizer, check_rate, chunks, read_audio

model, wav = sys.argv[1:3]
recognizer = StreamingRecognizer(Session(model, threads=1))
samples, rate = read_audio(wav)  # mono float32
check_rate(rate, recognizer.spec)  # must be the rate the model was trained on (16 kHz)

for chunk in chunks(samples, rate // 50):  # 20 ms of audio per call
    for phone in recognizer.accept(chunk).phones:
        print(f"{phone.start:6.2f}s  {phone.label}")
for phone in recognizer.finish().phones:  # the last frames, once the audio has ended
    print(f"{phone.start:6.2f}s  {phone.label}")
