"""Label fidelity on the real challenge files: notes vs masks, the sample-0 note trap, age-sex.csv."""

import ast
import shutil

import h5py
import numpy as np
import pytest
import wfdb

from dataset_scripts import challenge_format, challenge_io
from dataset_scripts import labels as label_tools


RECORD = "tr03-0005"
SAMPLES = 5_147_000
RATE = 200
WINDOW = 30 * RATE


@pytest.fixture(scope="module")
def real_notes_and_masks(real_labels_dir):
    notes = label_tools.read_arousal_notes(real_labels_dir / f"{RECORD}.arousal", SAMPLES, RATE)
    masks = label_tools.read_arousal_masks(real_labels_dir / f"{RECORD}-arousal.mat", SAMPLES)
    return notes, masks


def test_annotation_parser_matches_rdann_on_real_file(real_labels_dir):
    ours = label_tools.read_wfdb_annotations(real_labels_dir / f"{RECORD}.arousal")
    reference = wfdb.rdann(str(real_labels_dir / RECORD), "arousal")
    np.testing.assert_array_equal(ours.sample, reference.sample)
    assert ours.aux_note == reference.aux_note
    assert ours.definition_notes == ["## time resolution: 200"]
    # the real record's first stage note is not at sample 0: the masks call samples before it undefined
    first_stage = next(sample for sample, note in zip(ours.sample, ours.aux_note) if note in label_tools.STAGE_NOTE_TO_CODE)
    assert first_stage == 72000
    masks = h5py.File(real_labels_dir / f"{RECORD}-arousal.mat", "r")
    undefined = masks["data/sleep_stages/undefined"][0]
    assert undefined[: first_stage - 1].all() and not undefined[first_stage - 1 : first_stage + 10].any()


def test_stage_note_at_sample_zero_is_kept_in_real_segment(real_segments_dir):
    folder = real_segments_dir / "seg-0009"
    ours = label_tools.read_wfdb_annotations(folder / "seg-0009.arousal")
    dropped_by_rdann = wfdb.rdann(str(folder / "seg-0009"), "arousal")
    assert 0 not in dropped_by_rdann.sample  # the trap
    assert list(ours.sample) == [0, 6000] and ours.aux_note[0] == ours.aux_note[1]
    labels = label_tools.read_arousal_notes(folder / "seg-0009.arousal", 12000, RATE)
    masks = label_tools.read_arousal_masks(folder / "seg-0009-arousal.mat", 12000)
    # the excerpts' masks (cut from whole nights) do not mark their last sample undefined
    np.testing.assert_array_equal(labels.stage[:-1], masks.stage[:-1])
    assert label_tools.window_labels(labels, WINDOW).sleep_stage.tolist() == [labels.stage[0]] * 2


def test_written_note_at_sample_zero_is_kept(tmp_path):
    # a stage note at 0, an unknown note and an arousal pair, written with wfdb itself (which adds the
    # "## time resolution" definition note at sample 0, as in the challenge files)
    wfdb.wrann(
        "rec", "arousal", np.array([0, 3000, 6000, 7000, 9000]), symbol=['"'] * 5,
        aux_note=["N2", "mystery text", "N3", "(arousal_rera", "arousal_rera)"],
        fs=RATE, write_dir=str(tmp_path),
    )
    ours = label_tools.read_wfdb_annotations(tmp_path / "rec.arousal")
    assert ours.definition_notes == ["## time resolution: 200"]
    assert 0 not in wfdb.rdann(str(tmp_path / "rec"), "arousal").sample
    assert list(ours.sample) == [0, 3000, 6000, 7000, 9000]
    labels = label_tools.read_arousal_notes(tmp_path / "rec.arousal", 12000, RATE)
    assert labels.stage[0] == label_tools.STAGE_NOTE_TO_CODE["N2"]
    assert labels.report["unknown_notes"] == {"mystery text": 1}
    assert labels.report["events"] == {"arousal_rera": 1}
    windows = label_tools.window_labels(labels, WINDOW)
    assert windows.sleep_stage.tolist() == [2, 3]
    assert windows.arousal.tolist() == [0, 1]


def test_truncated_annotation_file_is_a_clear_error(tmp_path, real_labels_dir):
    payload = (real_labels_dir / f"{RECORD}.arousal").read_bytes()
    (tmp_path / "cut.arousal").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(label_tools.AnnotationFormatError, match="cut.arousal"):
        label_tools.read_wfdb_annotations(tmp_path / "cut.arousal")


def test_unpaired_events_are_reported(tmp_path):
    wfdb.wrann(
        "rec", "arousal", np.array([0, 100, 200, 300]), symbol=['"'] * 4,
        aux_note=["W", "resp_hypopnea)", "(arousal_rera", "(foo_event"], fs=RATE, write_dir=str(tmp_path),
    )
    labels = label_tools.read_arousal_notes(tmp_path / "rec.arousal", 6000, RATE)
    problems = {(entry["event"], entry["problem"]) for entry in labels.report["unpaired_events"]}
    assert problems == {("resp_hypopnea", "closed without opening"), ("arousal_rera", "never closed")}
    assert labels.report["unknown_notes"] == {"(foo_event": 1}


def test_notes_and_masks_agree_sample_for_sample(real_notes_and_masks):
    notes, masks = real_notes_and_masks
    assert notes.report["unknown_note_count"] == 0 and not notes.report["unpaired_events"]
    np.testing.assert_array_equal(notes.stage, masks.stage)
    np.testing.assert_array_equal(notes.arousal, masks.arousal)
    from_notes = label_tools.window_labels(notes, WINDOW)
    from_masks = label_tools.window_labels(masks, WINDOW)
    both_defined = (from_notes.sleep_stage >= 0) & (from_masks.sleep_stage >= 0)
    assert both_defined.sum() > 800
    np.testing.assert_array_equal(from_notes.sleep_stage[both_defined], from_masks.sleep_stage[both_defined])
    np.testing.assert_array_equal(from_notes.arousal, from_masks.arousal)


def test_window_arousal_counts_follow_the_masks(real_notes_and_masks, real_labels_dir):
    _, masks = real_notes_and_masks
    raw = h5py.File(real_labels_dir / f"{RECORD}-arousal.mat", "r")["data/arousals"][:, 0]
    num_windows = SAMPLES // WINDOW
    # (num_samples,) -> (num_windows, WINDOW)
    per_window = raw[: num_windows * WINDOW].reshape(num_windows, WINDOW)
    expected_positive = (per_window == 1).sum(axis=1) >= 3 * RATE
    expected_negative = ((per_window == 1).sum(axis=1) == 0) & ((per_window != -1).sum(axis=1) >= WINDOW / 2)
    labels = label_tools.window_labels(masks, WINDOW).arousal
    assert (labels == 1).sum() == expected_positive.sum() > 0
    assert (labels == 0).sum() == expected_negative.sum() > 0
    np.testing.assert_array_equal(labels == 1, expected_positive)
    assert ((labels == -1) == ~(expected_positive | expected_negative)).all()
    # the stage masks give the same per-window majority as a direct count
    stage_windows = masks.stage[: num_windows * WINDOW].reshape(num_windows, WINDOW)
    stages = label_tools.window_labels(masks, WINDOW).sleep_stage
    for window in np.flatnonzero(stages >= 0)[::50]:
        values, counts = np.unique(stage_windows[window], return_counts=True)
        assert values[counts.argmax()] == stages[window]


def test_window_label_rules_at_their_edges():
    stage = np.full(4 * WINDOW, -1, dtype=np.int8)
    stage[: WINDOW // 2 + 1] = 2  # window 0: N2 majority by one sample
    stage[WINDOW : WINDOW + WINDOW // 2] = 4  # window 1: REM/undefined tie -> -1
    stage[2 * WINDOW : 3 * WINDOW] = 0  # window 2: W
    arousal = np.zeros(4 * WINDOW, dtype=np.int8)
    arousal[: 3 * RATE - 1] = 1  # window 0: one sample short of 3 s -> not positive, not "none" -> -1
    arousal[WINDOW : WINDOW + 3 * RATE] = 1  # window 1: exactly 3 s -> 1
    arousal[2 * WINDOW : 2 * WINDOW + WINDOW // 2] = -1  # window 2: half scored -> 0
    arousal[3 * WINDOW : 3 * WINDOW + WINDOW // 2 + 1] = -1  # window 3: under half scored -> -1
    windows = label_tools.window_labels((stage, arousal), WINDOW)
    assert windows.sleep_stage.tolist() == [2, -1, 0, -1]
    assert windows.arousal.tolist() == [-1, 1, 0, -1]


def test_masks_errors_name_the_file(tmp_path, real_segments_dir):
    source = real_segments_dir / "seg-0009" / "seg-0009-arousal.mat"
    truncated = tmp_path / "cut-arousal.mat"
    truncated.write_bytes(source.read_bytes()[:3000])
    with pytest.raises(label_tools.ArousalMaskError, match="cut-arousal.mat"):
        label_tools.read_arousal_masks(truncated, 12000)
    copy = tmp_path / "copy-arousal.mat"
    shutil.copy(source, copy)
    with pytest.raises(label_tools.ArousalMaskError, match="12000 samples, the record has 11000"):
        label_tools.read_arousal_masks(copy, 11000)


def test_real_age_sex_table(real_labels_dir):
    table = label_tools.read_age_sex_csv(real_labels_dir / "age-sex.csv")
    assert len(table.entries) == 1983 and table.problems == []
    raw_rows = [line.split(",") for line in (real_labels_dir / "age-sex.csv").read_text().splitlines()[1:]]
    lower_case = [row for row in raw_rows if row[1] in ("m", "f")]
    assert lower_case, "the real file has lower-case sex values"
    for name, sex_text, age_text in lower_case:
        assert table.lookup(name) == (float(age_text), label_tools.SEX_NAMES.index(sex_text.upper()))
    assert table.lookup("tr99-9999") == (-1.0, -1)


def test_malformed_age_sex_rows_are_reported_with_line_numbers(tmp_path):
    path = tmp_path / "age-sex.csv"
    path.write_text("Record,Sex,Age\ntr01-0001,m,40\ntr01-0002,F\ntr01-0003,X,50\ntr01-0004,M,old\n,M,3\n\ntr01-0006,f,61.5\n")
    table = label_tools.read_age_sex_csv(path)
    assert table.lookup("tr01-0001") == (40.0, 1)
    assert table.lookup("tr01-0002") == (-1.0, 0)
    assert table.lookup("tr01-0003") == (50.0, -1)
    assert table.lookup("tr01-0004") == (-1.0, 1)
    assert table.lookup("tr01-0006") == (61.5, 0)
    problems = {(entry["line"], entry["problem"]) for entry in table.problems}
    assert problems == {
        (3, "missing age"),
        (4, "unknown sex 'X'"),
        (5, "non-numeric age 'old'"),
        (6, "missing record name"),
    }


# ------------------------------------------------------------------ writer (challenge_io) -> reader (labels)


def _expected_stage_per_sample(stage_notes, num_samples):
    """The challenge's stage rule written out here, independently of both modules: a note at s holds
    from s - 1 until one sample before the next note; the last sample is undefined (-1)."""
    code_of_note = {"W": 0, "N1": 1, "N2": 2, "N3": 3, "R": 4}
    stage = np.full(num_samples, -1, dtype=np.int8)
    for position, (sample, note) in enumerate(stage_notes):
        end = stage_notes[position + 1][0] if position + 1 < len(stage_notes) else num_samples
        stage[max(sample - 1, 0) : end - 1] = code_of_note[note]
    stage[-1] = -1
    return stage


def test_written_record_reads_back_to_the_same_classes_for_every_stage(tmp_path):
    # every stage note the challenge files use (W N1 N2 N3 R, the first at sample 0, wake again at the
    # end), two target arousals, an apnea, and an arousal inside the apnea's not-scored span
    num_samples = 12 * WINDOW
    stage_notes = [(0, "W"), (6000, "N1"), (18000, "N2"), (36000, "N3"), (48000, "R"), (66000, "W")]
    events = [(24000, 24600, "arousal_rera"), (40000, 42000, "resp_hypopnea"),
              (43000, 43500, "arousal_rera"), (54000, 55000, "arousal_spontaneous")]
    assert {note for _, note in stage_notes} == set(challenge_io.STAGE_NAMES)
    paths = challenge_io.write_record(
        tmp_path, "rt-0001", np.zeros((num_samples, 1), np.int16), ["C4-M1"], ["uV"], [1.0], [0], fs=RATE,
        stage_notes=stage_notes, events=events,
    )

    # the notes as the files spell them, the one at sample 0 included
    annotations = label_tools.read_wfdb_annotations(paths.arousal)
    assert [(int(sample), note) for sample, note in zip(annotations.sample, annotations.aux_note)
            if not note.startswith("(") and not note.endswith(")")] == stage_notes
    assert "(arousal_rera" in annotations.aux_note and "resp_hypopnea)" in annotations.aux_note

    from_notes = label_tools.read_arousal_notes(paths.arousal, num_samples, RATE)
    from_masks = label_tools.read_arousal_masks(paths.arousal_mat, num_samples)
    assert from_notes.report["unknown_note_count"] == 0 and not from_notes.report["unpaired_events"]
    assert from_notes.report["events"] == {"arousal_rera": 2, "arousal_spontaneous": 1, "resp_hypopnea": 1}
    assert from_masks.report["unknown_stage_masks"] == [] and from_masks.report["samples_without_stage_mask"] == 0

    expected_stage = _expected_stage_per_sample(stage_notes, num_samples)
    np.testing.assert_array_equal(from_notes.stage, expected_stage)
    np.testing.assert_array_equal(from_masks.stage, expected_stage)
    assert set(np.unique(from_masks.stage).tolist()) == {-1, 0, 1, 2, 3, 4}

    # arousal: +1 on [start - 2 s - 1, end + 10 s), -1 on [start - 10 s - 1, end + 10 s) of the apnea and
    # of both wake runs (-1 wins over +1), 0 elsewhere
    expected_arousal = np.zeros(num_samples, dtype=np.int8)
    for start, end in [(24000, 24600), (43000, 43500), (54000, 55000)]:
        expected_arousal[start - 2 * RATE - 1 : end + 10 * RATE] = 1
    for start, end in [(40000, 42000), (0, 5999), (65999, 71999)]:
        expected_arousal[max(start - 10 * RATE - 1, 0) : end + 10 * RATE] = -1
    np.testing.assert_array_equal(from_notes.arousal, expected_arousal)
    np.testing.assert_array_equal(from_masks.arousal, expected_arousal)

    # per window, and by class name: the file's R is the class REM
    for sample_labels in (from_notes, from_masks):
        windows = label_tools.window_labels(sample_labels, WINDOW)
        assert [label_tools.STAGE_NAMES[code] for code in windows.sleep_stage] == (
            ["W", "N1", "N1", "N2", "N2", "N2", "N3", "N3", "REM", "REM", "REM", "W"]
        )
        # 1 from 3 s of +1; 0 with no +1 and at least half scored; else -1 (e.g. window 3: 401 samples of +1)
        assert windows.arousal.tolist() == [-1, 0, 0, -1, 1, 0, -1, 1, -1, 1, 0, -1]


def test_writer_and_reader_share_one_convention_table():
    # the same objects, not equal copies
    assert challenge_io.STAGE_NAMES is challenge_format.STAGE_NOTES
    assert challenge_io.STAGE_SUBTYPES is challenge_format.STAGE_SUBTYPES
    assert challenge_io.STAGE_MASK_NAMES is challenge_format.STAGE_MASK_NAMES
    assert challenge_io.STAGE_MASK_ORDER is challenge_format.STAGE_MASK_ORDER
    assert challenge_io.EVENT_NAMES is label_tools.EVENT_NAMES is challenge_format.EVENT_NAMES
    assert label_tools.STAGE_NAMES is challenge_format.STAGE_CLASS_NAMES
    assert label_tools.STAGE_NOTE_TO_CODE is challenge_format.STAGE_NOTE_TO_CLASS
    assert label_tools.STAGE_MASK_TO_CODE is challenge_format.STAGE_MASK_TO_CLASS
    assert challenge_io.STAGE_MASK_TO_CLASS is challenge_format.STAGE_MASK_TO_CLASS  # the writer's masks
    assert challenge_io.STAGE_NOTE_TO_CLASS is challenge_format.STAGE_NOTE_TO_CLASS
    assert label_tools.TARGET_AROUSAL_PREFIX is challenge_io.TARGET_AROUSAL_PREFIX
    assert label_tools.NOT_SCORED_EVENT_PREFIX is challenge_io.NOT_SCORED_EVENT_PREFIX
    # the spellings of the files and the class names (R is REM)
    assert challenge_io.STAGE_NAMES == ("W", "N1", "N2", "N3", "R")
    assert label_tools.STAGE_NAMES == ("W", "N1", "N2", "N3", "REM")
    # the reader's note table covers exactly the writer's stage notes (plus the read-only alias REM), in class order
    aliases = challenge_format.STAGE_NOTE_ALIASES
    assert set(label_tools.STAGE_NOTE_TO_CODE) - set(aliases) == set(challenge_io.STAGE_NAMES)
    assert set(challenge_io.STAGE_NAMES) == set(challenge_io.STAGE_SUBTYPES) == set(challenge_io.STAGE_MASK_NAMES)
    assert [label_tools.STAGE_NOTE_TO_CODE[note] for note in challenge_io.STAGE_NAMES] == list(range(label_tools.NUM_STAGE_CLASSES))
    assert all(label_tools.STAGE_NOTE_TO_CODE[alias] == label_tools.STAGE_NOTE_TO_CODE[note] for alias, note in aliases.items())
    assert not set(aliases) & set(challenge_io.STAGE_SUBTYPES), "aliases are read, never written"
    # the reader's mask table covers exactly the masks the writer writes, with the same class per stage
    assert set(label_tools.STAGE_MASK_TO_CODE) == set(challenge_io.STAGE_MASK_ORDER)
    for note in challenge_io.STAGE_NAMES:
        assert label_tools.STAGE_MASK_TO_CODE[challenge_io.STAGE_MASK_NAMES[note]] == label_tools.STAGE_NOTE_TO_CODE[note]
    assert label_tools.STAGE_MASK_TO_CODE[challenge_format.UNDEFINED_MASK_NAME] == label_tools.UNDEFINED_STAGE
    # the event notes the writer writes are the ones the reader parses
    for name in challenge_io.EVENT_NAMES:
        rows = challenge_io.annotation_rows([], [(10, 20, name)])
        assert [label_tools.parse_event_note(row[1]) for row in rows] == [(name, "open"), (name, "close")]
    # the convention module imports nothing else of ours (it sits below both the writer and the reader)
    tree = ast.parse(open(challenge_format.__file__, encoding="utf-8").read())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module != "__future__"}
    assert not {name for name in imported if name.split(".")[0] in ("dataset_scripts", "physiomae", "modeling_physiomae")}
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree))
