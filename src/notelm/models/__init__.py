"""Models of next-event prediction; every one implements `SequenceModel` (see base.py)."""
