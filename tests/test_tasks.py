"""The training tasks by kind and their data, with toy networks whose behaviour is known exactly."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from notelm.encodings.vocab import BOS_ID, PAD_ID
from notelm.training.config import TrainConfig
from notelm.training.data import (
    IGNORE,
    PairArray,
    PairEvalWindows,
    PairWindows,
    SegmentEval,
    SegmentStream,
    TokenArray,
    owned_ranges,
    pair_windows,
    write_pairs,
    write_split,
)
from notelm.training.schedules import schedule
from notelm.training.tasks import LanguageModelTask, SegmentTask, Seq2SeqTask

V = 10


@dataclass(frozen=True)
class ToyConfig:
    vocab_size: int = V
    dim: int = 4
    context: int = 4


class Counter(nn.Module):
    """A "segments" network whose state is how many real tokens each row has seen since its
    piece began; its logits say it, so a test can read the carried state off them."""

    def __init__(self) -> None:
        super().__init__()
        self.config = ToyConfig()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, idx, state=None):
        seen = torch.zeros(idx.shape[0]) if state is None else state
        counts = seen[:, None] + torch.cumsum((idx != PAD_ID).float(), dim=1)
        logits = torch.zeros(*idx.shape, V)
        logits[..., 4] = counts * self.scale
        return logits, counts[:, -1].detach(), {"toy": 0.0 * self.scale}

    def reset(self, state, rows):
        return torch.where(rows, torch.zeros_like(state), state)

    def state_tensors(self, state):
        return {"seen": state}

    def state_from_tensors(self, tensors):
        return tensors["seen"]


def pieces(tmp_path, lengths=(3, 9, 5)):
    rng = np.random.default_rng(0)
    seqs = [rng.integers(4, V, size=n) for n in lengths]
    write_split(tmp_path, "train", seqs, V)
    return TokenArray(tmp_path, "train"), seqs


def test_a_segment_task_carries_state_within_a_piece_and_resets_it_at_the_next(tmp_path):
    data, seqs = pieces(tmp_path)
    stream = SegmentStream(data, length=4, batch_size=2, seed=1, batches_per_epoch=10, position=lambda: 0)
    task = SegmentTask(Counter(), train=TrainConfig(), total_steps=10, width=4)
    for g in range(12):
        x, y, starts = stream.batch(g)
        logits, _, aux = task.forward_batch((x, y, starts), training=True)
        assert set(aux) == {"toy"}
        for row in range(2):
            piece, seg = stream.locate(row, g)
            assert bool(starts[row]) == (seg == 0)
            # the count at the segment's last real input is the tokens seen since the piece's BOS
            real = int((x[row] != PAD_ID).sum())
            assert logits[row, real - 1, 4] == seg * 4 + real
            assert x[row, 0] == (BOS_ID if seg == 0 else seqs[piece][seg * 4 - 1])


def test_segment_streams_visit_every_piece_whole_and_in_order(tmp_path):
    data, seqs = pieces(tmp_path)
    stream = SegmentStream(data, length=4, batch_size=1, seed=3, batches_per_epoch=10, position=lambda: 0)
    per_cycle = int(stream.segments.sum())
    seen = {}
    for g in range(per_cycle):
        x, y, _ = stream.batch(g)
        piece, seg = stream.locate(0, g)
        seen.setdefault(piece, []).extend(y[0][y[0] != IGNORE].tolist())
    assert {p: np.array(v) for p, v in seen.items()}.keys() == set(range(len(seqs)))
    for p, v in seen.items():
        np.testing.assert_array_equal(v, seqs[p])
    # two processes with one row each read exactly the rows of one process with two
    both = SegmentStream(data, length=4, batch_size=2, seed=3, batches_per_epoch=10, position=lambda: 0)
    halves = [SegmentStream(data, length=4, batch_size=2, seed=3, batches_per_epoch=10, position=lambda: 0,
                            rank=r, world_size=2) for r in (0, 1)]
    for g in range(7):
        whole = both.batch(g)
        for r in (0, 1):
            for a, b in zip(halves[r].batch(g), whole):
                assert torch.equal(a, b[r::2])


def test_segment_validation_streams_each_piece_from_its_start(tmp_path):
    data, seqs = pieces(tmp_path)
    task = SegmentTask(Counter(), train=TrainConfig(), total_steps=1, width=4)
    got = {}
    for x, y, starts in SegmentEval(data, length=4, batch_size=2):
        logits, yy, _ = task.forward_batch((x, y, starts), training=False)
        for r in range(len(x)):
            mask = yy[r] != IGNORE
            got.setdefault(len(x), []).append(logits[r, mask, 4].tolist())
    total = sum(len(v) for rows in got.values() for v in rows)
    assert total == sum(len(s) for s in seqs)


def test_segment_state_is_saved_for_resume(tmp_path):
    data, _ = pieces(tmp_path)
    stream = SegmentStream(data, length=4, batch_size=2, seed=1, batches_per_epoch=10, position=lambda: 0)
    task = SegmentTask(Counter(), train=TrainConfig(), total_steps=10, width=4)
    for g in range(3):
        task.forward_batch(stream.batch(g), training=True)
    checkpoint = {}
    task.on_save_checkpoint(checkpoint)
    other = SegmentTask(Counter(), train=TrainConfig(), total_steps=10, width=4)
    other.on_load_checkpoint(checkpoint)
    other.on_train_start()
    torch.testing.assert_close(other._state, task._state)


def test_in_piece_windows_never_cross_a_piece_boundary(tmp_path):
    from notelm.training.data import RandomWindows

    data, seqs = pieces(tmp_path, lengths=(3, 40, 7, 25))
    loader = RandomWindows(data, length=6, batch_size=16, seed=0, batches_per_epoch=5, position=lambda: 0,
                           windows="in-piece")
    for g in range(20):
        x, y = loader.batch(g)
        for row in x:
            real = row[row != PAD_ID]
            assert (real[1:] != BOS_ID).all()  # a BOS only ever opens a window


# ---- sequence to sequence -----------------------------------------------------------------------


def test_paired_windows_follow_midi_translation_and_evaluation_covers_every_note(tmp_path):
    assert pair_windows(300, 128, 42, cover=False) == [(0, 128), (42, 170), (84, 212), (126, 254), (168, 296)]
    covered = pair_windows(300, 128, 42, cover=True)
    assert covered[-1] == (172, 300)
    owned = owned_ranges(300, covered)
    positions = [a + i for (a, _), (lo, hi) in zip(covered, owned) for i in range(lo, hi)]
    assert positions == list(range(300))  # each note scored once, in order
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(4, 20, n), rng.integers(4, 30, n)) for n in (5, 300)]
    write_pairs(tmp_path, "train", pairs, (20, 30))
    data = PairArray(tmp_path, "train")
    scored = []
    for src, pad, tgt_in, tgt_out in PairEvalWindows(data, length=128, step=42, batch_size=3):
        assert (src[:, 0] == BOS_ID).all() and (tgt_in[:, 0] == BOS_ID).all()
        assert torch.equal(pad, src == PAD_ID)
        scored.extend(tgt_out[tgt_out != IGNORE].tolist())
    assert sorted(scored) == sorted(np.concatenate([t for _, t in pairs]).tolist())
    loader = PairWindows(data, length=128, step=42, batch_size=4, seed=0, batches_per_epoch=None, position=lambda: 0)
    src, pad, tgt_in, tgt_out = loader.batch(0)
    assert src.shape == (4, 129) and tgt_in.shape == tgt_out.shape == (4, 128)
    # teacher forcing: the input at i is the target at i - 1 (the first input is BOS)
    real = tgt_out != IGNORE
    assert torch.equal(tgt_in[:, 1:][real[:, :-1]], tgt_out[:, :-1][real[:, :-1]])


class Echo(nn.Module):
    """A seq2seq network predicting each target as the source token at its position."""

    def __init__(self) -> None:
        super().__init__()
        self.config = ToyConfig(vocab_size=30)
        self.sharp = nn.Parameter(torch.tensor(5.0))

    def forward(self, source, target_in, *, source_padding):
        return self.sharp * nn.functional.one_hot(source[:, 1:target_in.shape[1] + 1], 30).float()


def test_seq2seq_task_scores_targets_given_their_sources():
    source = torch.tensor([[BOS_ID, 7, 8, 9]])
    target_out = torch.tensor([[7, 8, IGNORE]])
    target_in = torch.tensor([[BOS_ID, 7, 8]])
    task = Seq2SeqTask(Echo(), train=TrainConfig(), total_steps=1, width=4)
    with torch.no_grad():
        total, count, correct, _ = task.losses((source, source == PAD_ID, target_in, target_out))
    # softmax over the 27 allowed ids (no PAD, BOS, UNK), the right one at logit 5
    expected = 2 * -math.log(math.exp(5) / (math.exp(5) + 26))
    assert count == 2 and correct == 2 and abs(total.item() - expected) < 1e-5


# ---- the loss and the schedules, by hand ----------------------------------------------------------


class Fixed(nn.Module):
    def __init__(self, logits) -> None:
        super().__init__()
        self.config = ToyConfig(vocab_size=logits.shape[-1])
        self.logits = nn.Parameter(logits)

    def forward(self, idx, state=None):
        return self.logits.expand(idx.shape[0], -1, -1), None


def test_label_smoothed_loss_equals_the_hand_computed_value():
    # vocabulary 6: PAD, BOS, EOS, UNK, 4, 5 -> allowed EOS, 4, 5 (3 classes)
    z = torch.tensor([[[0.0, 0.0, 1.0, 0.0, 2.0, 0.5]]])
    task = LanguageModelTask(Fixed(z), train=TrainConfig(), total_steps=1, width=4)
    x, y = torch.tensor([[4]]), torch.tensor([[4]])
    allowed = torch.tensor([1.0, 2.0, 0.5])
    logp = allowed - torch.logsumexp(allowed, 0)
    eps = 0.2
    want = -((1 - eps) * logp[1] + eps * logp.mean())  # PyTorch's smoothing: eps spread over all classes
    total, count, correct, _ = task.losses((x, y), smoothing=eps)
    assert count == 1 and correct == 1
    assert abs(float(total.detach()) - float(want)) < 1e-6
    plain, _, _, _ = task.losses((x, y))
    assert abs(float(plain.detach()) - float(-logp[1])) < 1e-6


def test_noam_schedule_equals_hand_computed_values():
    f = schedule("noam", warmup=4000, total=10, min_ratio=0.0, dim=256)
    # lr multiplier at optimiser step s (LambdaLR calls f(s - 1)): 256^-0.5 * min(s^-0.5, s * 4000^-1.5)
    assert abs(f(0) - 0.0625 * 1 * 4000 ** -1.5) < 1e-15
    assert abs(f(3999) - 0.0625 * 4000 ** -0.5) < 1e-15  # the peak, 0.000988
    assert abs(f(3999) - 9.882117688026186e-04) < 1e-15
    assert abs(f(15999) - 4.941058844013093e-04) < 1e-15  # step 16000, after the warmup: 1/16 * 16000^-0.5
    assert abs(f(0) - 2.470529422006547e-07) < 1e-18  # step 1: 1/16 * 1 * 4000^-1.5


def test_noam_counted_in_accumulated_batches_is_a_larger_batch_with_a_smaller_factor():
    # midi-translation's train.py sums 10 batches' gradients per update (accum_iter 10) and steps
    # its Noam schedule after every batch: update k uses noam(warmup 4,000)(10k). The README's
    # batch_size=160, lr=10^-0.5, warmup_steps=400 gives the same rate at our optimiser step k.
    original = schedule("noam", warmup=4000, total=10, min_ratio=0.0, dim=256)
    ours = schedule("noam", warmup=400, total=10, min_ratio=0.0, dim=256)
    for k in (1, 7, 399, 400, 401, 2723, 10000):
        assert abs(10 ** -0.5 * ours(k - 1) - original(10 * k - 1)) < 1e-15 * original(10 * k - 1) * 10
