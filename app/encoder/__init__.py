"""Where units are made: the audio front end (audio.py), dense feature models (dense.py, whisper.py), pitch
(pitch.py) and :class:`~app.encoder.units.SpeechEncoder` (units.py): waveform -> units + aligned streams."""
