from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest

from conftest import FIXTURES, MAESTRO_MINI, POP909, needs_maestro, needs_pop909
from notelm import corpora
from notelm.corpora import CorpusSpec, hash_split, load_corpus, normalise_title, split_keys
from notelm.describe import corpus_info, corpus_list
from notelm.errors import NotelmError, UnknownNameError
from notelm.io import write_midi
from notelm.pieces import Piece, PieceMeta
from test_io import two_track_piece


def test_essen_kinder_is_pearce_2005_dataset_7():
    info = corpus_info(load_corpus("essen-kinder"))
    assert (info["pieces"], info["notes"], info["distinct_pitches"]) == (213, 8393, 27)
    assert (info["pitch_min"], info["pitch_max"]) == (52, 79)
    assert sum(info["splits"].values()) == 213 and info["skipped"] == []


def test_registry_names_every_essen_collection_and_the_bundled_corpora():
    names = {r["name"] for r in corpus_list()}
    assert {"essen", "essen-erk", "essen-kinder", "essen-fink", "oneills", "ryans", "bach-chorales",
            "bach-chorales-soprano", "maestro", "pop909", "lakh", "folder", "thesession"} <= names
    counts = {r["name"]: r["pieces"] for r in corpus_list()}
    assert counts["essen-kinder"] == 213 and counts["essen-erk"] > 1700


@needs_maestro
def test_maestro_mini_has_maestros_own_splits():
    c = load_corpus("maestro", MAESTRO_MINI)
    assert len(c.pieces) == 274
    assert Counter(c.splits) == {"train": 209, "valid": 24, "test": 41}
    assert c.pieces[0].time_unit == "second" and c.pieces[0].meta.id.startswith("2004/")
    assert len(c.split("valid")) == 24


@needs_pop909
def test_pop909_reads_its_three_tracks():
    c = load_corpus("pop909", POP909)
    assert len(c.pieces) == 909 and not c.skipped
    assert [t.name for t in c.pieces[0].tracks] == ["MELODY", "BRIDGE", "PIANO"]


def test_hash_splits_are_stable_and_follow_the_fractions():
    ids = [f"tune-{i}" for i in range(5000)]
    splits = [hash_split(i) for i in ids]
    assert splits == [hash_split(i) for i in ids]
    share = Counter(splits)
    assert abs(share["train"] / 5000 - 0.8) < 0.02 and abs(share["test"] / 5000 - 0.1) < 0.02
    assert {hash_split(i, (0.5, 0.0, 0.5)) for i in ids} == {"train", "test"}
    with pytest.raises(NotelmError):
        hash_split("x", (0.5, 0.5, 0.5))


def test_folds_put_piece_i_in_fold_i_mod_k():
    c = load_corpus("essen-kinder")
    assert c.folds(10).tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]


@pytest.fixture
def user_folder(tmp_path):
    """A user's folder: good and broken files of every kind, one nested."""
    root = tmp_path / "music"
    (root / "sub").mkdir(parents=True)
    write_midi(two_track_piece(), root / "a.mid")
    shutil.copy(FIXTURES / "broken" / "corrupt.mid", root / "sub" / "corrupt.mid")
    shutil.copy(FIXTURES / "broken" / "tunes.abc", root / "tunes.abc")
    shutil.copy(FIXTURES / "tiny.krn", root / "sub" / "tiny.krn")
    (root / "notes.txt").write_text("not music")
    return root


def listing(root):
    return sorted((p.relative_to(root).as_posix(), p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_folder_corpus_skips_and_counts_bad_files_and_writes_nothing_there(user_folder):
    before = listing(user_folder)
    c = load_corpus("folder", user_folder, workers=2)
    assert [p.meta.id for p in c.pieces] == ["a.mid", "sub/tiny.krn", "tunes.abc#1", "tunes.abc#3"]
    assert sorted(s["path"].rsplit("/", 1)[-1] for s in c.skipped) == ["corrupt.mid", "tunes.abc#2"]
    assert listing(user_folder) == before
    with pytest.raises(NotelmError, match="corrupt.mid"):
        load_corpus("folder", user_folder, strict=True)


def test_cache_serves_the_second_load_and_notices_edits(user_folder, monkeypatch):
    first = load_corpus("folder", user_folder, workers=1)

    def no_parsing(*args, **kwargs):
        raise AssertionError("parsed again although cached")

    monkeypatch.setattr(corpora, "read_items", no_parsing)
    again = load_corpus("folder", user_folder, workers=1)
    assert again.pieces == first.pieces and again.skipped == first.skipped
    assert [p.meta for p in again.pieces] == [p.meta for p in first.pieces]
    monkeypatch.undo()
    write_midi(two_track_piece().transpose(2), user_folder / "a.mid", force=True)
    edited = load_corpus("folder", user_folder, workers=1)
    assert edited.pieces[0] == two_track_piece().transpose(2)
    uncached = load_corpus("folder", user_folder, use_cache=False, workers=1)
    assert uncached.pieces == edited.pieces


def test_bad_names_and_roots_are_one_line_errors(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown corpus 'esen'.*essen-kinder"):
        load_corpus("esen")
    with pytest.raises(NotelmError, match="needs --root"):
        load_corpus("maestro")
    with pytest.raises(NotelmError, match="no such folder"):
        load_corpus("maestro", tmp_path / "nowhere")
    with pytest.raises(NotelmError, match="no MAESTRO metadata csv"):
        load_corpus("maestro", tmp_path)
    with pytest.raises(NotelmError, match="takes no --root"):
        load_corpus("essen-kinder", tmp_path)


def test_thesession_loader_reads_a_users_dump(tmp_path):
    # made-up tunes in thesession.org's csv layout (the real dump is never used here)
    (tmp_path / "tunes.csv").write_text(
        "tune_id,setting_id,name,type,meter,mode,abc,date,username\n"
        '1,11,Made Up Reel,reel,4/4,Gmajor,"|:GABc dBAG|FGAB cAFD:|",2020,x\n'
        '1,12,Made Up Reel,reel,4/4,Gmajor,"GABc dBAG|FGAB cAFD|",2020,y\n'
        '2,21,Other Jig,jig,6/8,Dmajor,"DFA dAF|GBd gdB|",2020,z\n'
    )
    c = load_corpus("thesession", tmp_path)
    assert [p.meta.id for p in c.pieces] == ["setting-11", "setting-12", "setting-21"]
    assert len(c.pieces[0]) == 32 and len(c.pieces[1]) == 16  # the repeat is played
    assert np.array_equal(c.pieces[2].pitch[:3], [62, 66, 69])
    assert c.splits[0] == c.splits[1]  # two settings of one tune: one split


def test_a_copied_file_is_served_from_the_cache_under_its_own_name(user_folder, tmp_path):
    load_corpus("folder", user_folder, workers=1)
    other = tmp_path / "copy"
    other.mkdir()
    shutil.copy(user_folder / "tunes.abc", other / "songs.abc")
    c = load_corpus("folder", other, workers=1)
    assert [p.meta.id for p in c.pieces] == ["songs.abc#1", "songs.abc#3"]
    assert c.pieces[0].meta.source == f"{other.resolve()}/songs.abc#1"
    assert c.skipped[0]["path"] == f"{other.resolve()}/songs.abc#2"


# ---- splits by tune title ----------------------------------------------------------------------


@pytest.mark.parametrize("title, key", [
    ("Out With the Boys. 1st Setting.", "out with the boy"),
    ("The Hare in the Corn. No. 2.", "hare in the corn"),
    ("Fisher's Hornpipe (2nd Setting)", "fisher hornpipe"),
    ("THE COOLIN. With Variations", "coolin"),
    ("First of June, The", "first of june"),  # a copy of "The First of June" in music21's O'Neill's
    ("The Sailor' Hornpipe", "sailor hornpipe"),
    ("Wandering WILLIE", "wandering willy"),
    ("Happy to Meet and Sorry to Part.", "happy to meet and sorry to part"),  # "part" is the title's
    ("Spirit of 1880 -- Reel", "spirit of 1880 reel"),  # a year is no setting number
    ("CAMP-MEETING -- JIG No.2.", "camp meeting jig"),
    ("Graf und Nonne (Die Nonne)", "graf und nonne"),
    ("Altes M\x94bel (2-38), S. 99f", "alte moebel"),  # Essen lux: CP437 read as Latin-1, page ref
    ("Mädle, wo bisch gsi", "maedle wo bisch gsi"),
    ("A Bhruinnillín Bhéasach, S. 36", "a bhruinnillin bheasach"),
    ("(2)", ""),
    ("", ""),
])
def test_normalise_title(title, key):
    assert normalise_title(title) == key


def tune(title, pitches, id_):
    n = len(pitches)
    return Piece(pitch=np.array(pitches), onset=np.arange(n, dtype=float), duration=np.ones(n),
                 meta=PieceMeta(id=id_, title=title))


def test_title_and_tune_keys_join_settings_and_copies_and_fall_back_to_the_id():
    opening = list(range(60, 77))  # 17 notes: 16 intervals
    pieces = [tune("The Tenpenny Bit. 1st Setting.", [60, 62], "a"),
              tune("Tenpenny Bit, The. 2nd Setting.", [64, 65], "b"),
              tune("The Short Grass", opening, "c"),
              tune("Put on your Clothes", [p + 2 for p in opening] + [50], "d"),  # same opening, transposed
              tune("", [60, 61], "e"),
              tune("(2)", [60, 61], "f")]
    titles = split_keys(pieces, "title")  # each piece alone
    assert titles == ["title:tenpenny bit", "title:tenpenny bit", "title:short grass", "title:put on your clothe", "e", "f"]
    tunes = split_keys(pieces, "tune")  # over the pieces: the opening joins c and d
    assert tunes[:2] == titles[:2] and tunes[4:] == titles[4:]
    assert tunes[2] == tunes[3] == "title:put on your clothe"  # the least title of the group
    assert split_keys(pieces) == ["a", "b", "c", "d", "e", "f"]
    with pytest.raises(NotelmError, match="split_by"):
        split_keys(pieces, "name")
    with pytest.raises(ValueError, match="split_by"):
        CorpusSpec("x", "", "", lambda root: [], split_by="name")


def test_oneills_settings_and_copies_never_straddle_splits():
    try:
        c = load_corpus("oneills", workers=2)
    except NotelmError as e:
        pytest.skip(f"music21's O'Neill's 1850 is absent: {e}")
    if not c.pieces:
        pytest.skip("music21's O'Neill's 1850 is absent")
    split_of: dict[str, set[str]] = {}
    for piece, split in zip(c.pieces, c.splits):
        split_of.setdefault(normalise_title(piece.meta.title), set()).add(split)
    assert all(len(s) == 1 for s in split_of.values())
    assert sum(1 for p in c.pieces if normalise_title(p.meta.title) == "tenpenny bit") == 2
    by_title = {p.meta.title: s for p, s in zip(c.pieces, c.splits)}
    # spelled apart, same tune (the opening joins them): O'Neill's no. 629 in two files
    assert by_title["Young Terence McDonough"] == by_title["Young Terence Mac Donough"]
    assert set(Counter(c.splits)) == {"train", "valid", "test"}


def test_an_essen_collection_splits_as_all_of_essen_does():
    """Title keys depend on each piece alone, so a collection's splits are those its pieces
    have in all of Essen; tune keys depend on the other pieces and are for whole corpora."""
    specs = corpora.registry()
    assert {s.split_by for name, s in specs.items() if name.startswith("essen")} == {"title"}
    fink = load_corpus("essen-fink").pieces
    kinder = load_corpus("essen-kinder").pieces
    assert split_keys(kinder, "title") == split_keys(fink + kinder, "title")[len(fink):]
