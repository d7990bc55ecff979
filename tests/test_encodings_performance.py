"""Performance events (Oore et al. 2018) and midi-translation's note tokens: the documented
tokens, quantization, and behaviour on overlapping, tiny and out-of-range notes."""

from __future__ import annotations

import numpy as np
import pytest

from notelm.encodings import EncodingError, get_encoding
from notelm.encodings.note_tokens import bin_values, fit_edges
from notelm.pieces import Piece, PieceMeta


def notes(pitch, onset, duration, velocity=None, **kw) -> Piece:
    return Piece(pitch=np.array(pitch), onset=np.array(onset, float), duration=np.array(duration, float),
                 velocity=None if velocity is None else np.array(velocity), time_unit=kw.pop("time_unit", "second"), **kw)


def test_events_shifts_and_velocity_changes():
    enc = get_encoding("performance")
    piece = notes([60, 64], [0.0, 0.0], [0.5, 2.55], [80, 80])
    # one velocity event for both notes, offs before ons, long gaps as several shifts
    assert enc.tokens(piece) == ["vel-19", "on-60", "on-64", "shift-50", "off-60", "shift-100",
                                 "shift-100", "shift-5", "off-64"]
    assert enc.quantized(piece).velocity.tolist() == [77, 77]  # bin 19 decodes to 1 + 19*4


def test_overlapping_same_pitch_notes_end_where_the_next_starts():
    enc = get_encoding("performance", sustain=False)
    piece = notes([60, 60], [0.0, 0.5], [1.0, 1.0], [64, 64])
    q = enc.quantized(piece)
    assert q.onset.tolist() == [0.0, 0.5] and q.duration.tolist() == [0.5, 1.0]
    assert enc.tokens(piece) == ["vel-15", "on-60", "shift-50", "off-60", "on-60", "shift-100", "off-60"]
    assert enc.decode(enc.encode(piece)) == q


def test_same_pitch_same_step_notes_become_one_longest_loudest():
    enc = get_encoding("performance")
    q = enc.quantized(notes([60, 60], [0.0, 0.001], [0.3, 0.8], [100, 20]))
    assert len(q) == 1 and q.duration[0] == pytest.approx(0.8) and q.velocity[0] == 97


def test_notes_shorter_than_a_step_last_one_step():
    enc = get_encoding("performance")
    q = enc.quantized(notes([60], [0.1], [0.001]))
    assert q.onset[0] == 0.1 and q.duration[0] == pytest.approx(0.01)


def test_sustain_pedal_extends_notes_unless_disabled():
    piece = notes([60], [0.0], [0.2], pedals=np.array([[0.1, 0.9]]))
    assert get_encoding("performance").quantized(piece).duration[0] == 1.0
    assert get_encoding("performance", sustain=False).quantized(piece).duration[0] == 0.2


def test_beats_become_seconds_through_the_tempo_map():
    enc = get_encoding("performance")
    beat = notes([60], [1.0], [1.0], time_unit="beat")
    assert enc.quantized(beat).onset[0] == 0.5  # 120 qpm when no tempo is known
    slow = notes([60], [1.0], [1.0], time_unit="beat", meta=PieceMeta(tempos=((0.0, 60.0),)))
    assert enc.quantized(slow).onset[0] == 1.0


def test_velocity_zero_counts_as_one_and_pitch_must_be_midi():
    enc = get_encoding("performance")
    assert enc.quantized(notes([60], [0], [1], [0])).velocity[0] == 1
    with pytest.raises(EncodingError, match="pitch outside 0-127"):
        enc.encode(notes([130], [0], [1]))


def test_decoding_sampled_sequences_is_lenient():
    enc = get_encoding("performance")
    v = enc.vocab.id
    # an off with no on is ignored; a note left on lasts until the last event
    got = enc.decode([v("off-61"), v("on-60"), v("shift-20"), v("on-62"), v("shift-30"), v("off-62")])
    assert got.pitch.tolist() == [60, 62] and got.duration.tolist() == [0.5, 0.3]
    assert got.velocity.tolist() == [61, 61]  # no velocity event yet: the bin of 64


def test_note_token_bins_follow_midi_translation():
    # the bin edges quoted in REFERENCE §4 and the values midi-translation decodes them to
    assert bin_values(np.array([0, 0.048, 0.5]), "dstart").tolist() == pytest.approx([0.024, 0.274, 1.0])
    assert bin_values(np.array([0, 0.146, 0.45]), "duration").tolist() == pytest.approx([0.073, 0.298, 0.9])
    assert bin_values(np.array([0, 57, 74, 128]), "velocity").tolist() == [45, 65, 101]
    rng = np.random.default_rng(0)
    gaps = rng.exponential(0.1, 1000)
    assert fit_edges(gaps, "dstart", 3).tolist() == pytest.approx([0, np.median(gaps), 0.5])
    vel = fit_edges(rng.integers(20, 110, 1000).astype(float), "velocity", 3)
    assert vel[0] == 0 and vel[-1] == 128 and len(vel) == 4


def test_note_tokens_sources_and_exact_velocity_targets():
    piece = notes([42, 60, 64], [0.0, 0.01, 1.0], [0.1, 0.3, 0.6], [50, 70, 90])
    enc = get_encoding("note-tokens").fit([piece])
    tokens = enc.tokens(piece)
    assert len(tokens) == 3 and all(t.count("-") == 3 for t in tokens) and tokens[0].startswith("42-")
    src, tgt = enc.encode_pair(piece)
    assert enc.target_vocab.tokens(tgt) == ["50", "70", "90"]
    exact = enc.decode_pair(np.r_[1, src], np.r_[1, tgt])  # a leading BOS acts as CLS
    assert exact.velocity.tolist() == [50, 70, 90] and exact.onset[0] == 0.0
    with pytest.raises(EncodingError, match="lengths differ"):
        enc.decode_pair(src, tgt[:2])
    with pytest.raises(EncodingError, match="no notes"):
        get_encoding("note-tokens").fit([Piece.empty(time_unit="second")])


def rule_breaks(enc, ids) -> int:
    """How many of ``ids`` the encoding's rules forbid at their place."""
    rules, bad = enc.rules(), 0
    for token in ids:
        bad += not rules.allowed()[int(token)]
        rules.observe(int(token))
    return bad


def test_the_rules_pass_every_sequence_the_encoder_writes():
    enc = get_encoding("performance")
    rng = np.random.default_rng(0)
    n = 300  # chords, re-strikes, overlaps of one pitch, notes under a pedal, repeated velocities
    piece = notes(rng.integers(50, 60, n), np.round(rng.uniform(0, 20, n), 2), rng.uniform(0.001, 2.0, n),
                  rng.choice([40, 41, 90], n), pedals=np.array([[2.0, 6.0], [10.0, 10.5]]))
    assert rule_breaks(enc, enc.encode(piece)) == 0
    dry = get_encoding("performance", sustain=False, velocity_bins=8, max_shift_steps=20)
    assert rule_breaks(dry, dry.encode(piece)) == 0


def test_the_rules_forbid_what_the_encoder_never_writes():
    enc = get_encoding("performance")
    ids = enc.vocab.ids
    rules = enc.rules(ids(["vel-10", "on-60"]))
    allowed = dict(zip(enc.vocab.tokens(np.arange(len(enc.vocab))), rules.allowed(), strict=True))
    assert not allowed["on-60"] and allowed["on-61"]  # a key that is down cannot be struck
    assert not allowed["off-60"]  # nor released on the step it went down
    assert not allowed["off-61"]  # a key that is up cannot be released
    assert not allowed["vel-10"] and allowed["vel-11"]  # the bin in force is never written again
    assert allowed["<eos>"] and not allowed["<pad>"] and not allowed["<bos>"]
    rules.observe(ids(["shift-3"])[0])
    assert rules.allowed()[ids(["off-60"])[0]] and not rules.allowed()[ids(["on-60"])[0]]
    rules.observe(ids(["off-60"])[0])
    assert rules.allowed()[ids(["on-60"])[0]]  # released: it may be struck again (off, on)
    rules.observe(ids(["vel-3"])[0])
    after_velocity = {t for t, ok in zip(enc.vocab.tokens(np.arange(len(enc.vocab))), rules.allowed(), strict=True) if ok}
    assert after_velocity == {f"on-{p}" for p in range(128)}  # a velocity event comes right before a note-on


def test_the_repeat_penalty_weighs_down_the_pitches_of_the_previous_onset():
    enc = get_encoding("performance")
    ids = enc.vocab.ids
    on = dict(zip(range(128), ids([f"on-{p}" for p in range(128)]), strict=True))
    plain, rules = (enc.rules(ids(["vel-10", "on-55", "shift-5", "off-55", "on-60", "on-64", "shift-5", "off-64"]),
                              repeat_penalty=r) for r in (1.0, 4.0))
    assert np.array_equal(plain.weights(), plain.allowed().astype(float))
    w = rules.weights()  # the last onset struck 60 and 64 (60 still down: not allowed)
    assert w[on[64]] == 0.25 and w[on[55]] == w[on[61]] == 1.0 and w[on[60]] == 0
    assert np.array_equal(w > 0, rules.allowed())
    rules.observe(on[67])  # a new onset begins: within it, the previous one (60, 64) is weighed down
    w = rules.weights()
    assert w[on[64]] == 0.25 and w[on[55]] == 1.0 and w[on[67]] == 0
    rules.observe(ids(["shift-2"])[0])  # later: 67's onset is the previous one
    assert rules.weights()[on[64]] == 1.0
    for token in ids(["off-67", "on-67", "shift-2", "off-67"]):  # 67 twice in a row: 1 / 4^2 the third time
        rules.observe(token)
    assert rules.weights()[on[67]] == 1 / 16
    for bad in (0.5, float("inf"), True, "2"):
        with pytest.raises(EncodingError, match="repeat penalty"):
            enc.rules(repeat_penalty=bad)
