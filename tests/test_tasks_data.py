import json
import math
from collections import Counter
from contextlib import contextmanager

import datasets
import huggingface_hub.constants
import numpy as np
import pytest
import torch

from trainables.data import load_splits, load_task_data, make_loader, tokenize_split
from trainables.errors import UserError
from trainables.tasks import CHEMPROT_LABELS, TASKS, get_task

# Row counts and label counts from each task's SOURCE.md.
EXPECTED = {
    "sst2": {"train": (67349, {"0": 29780, "1": 37569}), "dev": (872, {"0": 428, "1": 444})},
    "cola": {"train": (8551, {"0": 2528, "1": 6023}), "dev": (1043, {"0": 322, "1": 721})},
    "mrpc": {"train": (3668, {"0": 1194, "1": 2474}), "dev": (408, {"0": 129, "1": 279})},
    "stsb": {"train": (5749, None), "dev": (1500, None)},
    "chemprot": {
        "train": (4169, {"INHIBITOR": 1642, "INDIRECT-DOWNREGULATOR": 487, "SUBSTRATE": 480,
                         "INDIRECT-UPREGULATOR": 387, "ACTIVATOR": 323, "ANTAGONIST": 235, "PRODUCT-OF": 233,
                         "AGONIST": 156, "DOWNREGULATOR": 131, "UPREGULATOR": 67, "SUBSTRATE_PRODUCT-OF": 14,
                         "AGONIST-ACTIVATOR": 10, "AGONIST-INHIBITOR": 4}),
        "dev": (2427, {"INHIBITOR": 812, "INDIRECT-DOWNREGULATOR": 270, "SUBSTRATE": 322,
                       "INDIRECT-UPREGULATOR": 278, "ACTIVATOR": 257, "ANTAGONIST": 199, "PRODUCT-OF": 130,
                       "AGONIST": 111, "DOWNREGULATOR": 21, "UPREGULATOR": 17, "SUBSTRATE_PRODUCT-OF": 5,
                       "AGONIST-ACTIVATOR": 5}),
    },
    "gad": {"train": (4261, {"0": 2034, "1": 2227}), "dev": (535, {"0": 242, "1": 293})},
}
STSB_MEAN = {"train": 2.701, "dev": 2.364}


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def tsv(rows):
    return "".join("\t".join(map(str, row)) + "\n" for row in rows)


@contextmanager
def raises_user_error(*fragments):
    """Expect a UserError whose message contains every fragment."""
    with pytest.raises(UserError) as info:
        yield info
    for fragment in fragments:
        assert str(fragment) in str(info.value), (fragment, str(info.value))


# ---- the shared benchmark copies ------------------------------------------------------------------

@pytest.fixture(scope="module")
def raw(data_dir):
    """Every task's full train and dev splits, loaded once."""
    return {name: load_splits(TASKS[name], data_dir) for name in EXPECTED}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_shared_task_row_counts_and_labels(raw, name):
    task = TASKS[name]
    for split, (rows, label_counts) in EXPECTED[name].items():
        ds = raw[name][split]
        assert len(ds) == rows, (name, split)
        assert set(ds.column_names) == {*task.text_columns, "labels", "idx"}
        assert ds["idx"][:3] == [0, 1, 2] and ds["idx"][-1] == rows - 1
        labels = ds["labels"]
        if label_counts is None:
            assert ds.features["labels"].dtype == "float32"
            assert min(labels) == 0.0 and max(labels) == 5.0
            assert np.mean(labels) == pytest.approx(STSB_MEAN[split], abs=5e-4)
        else:
            assert ds.features["labels"].dtype == "int64"
            assert Counter(task.labels[i] for i in labels) == label_counts
        assert all(isinstance(t, str) for c in task.text_columns for t in ds[c][:50])


def test_text_is_kept_verbatim(raw):
    # SST-2 sentences end with a space; MRPC has unescaped quotes (no CSV quoting)
    assert raw["sst2"]["train"][0]["sentence"] == "hide new secretions from the parental units "
    assert raw["mrpc"]["train"][0]["sentence1"].startswith('Amrozi accused his brother, whom he called "the witness"')


@pytest.mark.parametrize("name", list(EXPECTED))
def test_quiz_split_comes_from_train_file(raw, data_dir, name):
    td = load_task_data(TASKS[name], data_dir, seed=3)
    total = EXPECTED[name]["train"][0]
    assert len(td.train) + len(td.quiz) == total
    assert len(td.quiz) == math.ceil(0.1 * total)
    assert len(td.dev) == EXPECTED[name]["dev"][0]
    train_idx, quiz_idx = set(td.train["idx"]), set(td.quiz["idx"])
    assert not train_idx & quiz_idx
    assert train_idx | quiz_idx == set(range(total))


def test_quiz_rows_match_their_train_file_rows(raw, data_dir):
    td = load_task_data(TASKS["mrpc"], data_dir)
    full = raw["mrpc"]["train"]
    for row in td.quiz.select(range(20)):
        assert full[row["idx"]] == row


def test_quiz_split_is_seeded(data_dir):
    task = TASKS["mrpc"]
    first = load_task_data(task, data_dir, seed=1).quiz["idx"]
    assert load_task_data(task, data_dir, seed=1).quiz["idx"] == first
    assert set(load_task_data(task, data_dir, seed=2).quiz["idx"]) != set(first)


def test_quiz_fraction(data_dir):
    td = load_task_data(TASKS["cola"], data_dir, quiz_fraction=0.25)
    assert len(td.quiz) == math.ceil(0.25 * 8551)
    with raises_user_error("quiz_fraction", "1.5"):
        load_task_data(TASKS["cola"], data_dir, quiz_fraction=1.5)


def test_max_train_samples_caps_before_the_quiz_split(data_dir):
    task = TASKS["sst2"]
    td = load_task_data(task, data_dir, max_train_samples=300, max_eval_samples=50, seed=5)
    assert (len(td.train), len(td.quiz), len(td.dev)) == (270, 30, 50)
    rows = set(td.train["idx"]) | set(td.quiz["idx"])
    assert len(rows) == 300
    again = load_task_data(task, data_dir, max_train_samples=300, max_eval_samples=50, seed=5)
    assert set(again.train["idx"]) | set(again.quiz["idx"]) == rows
    other = load_task_data(task, data_dir, max_train_samples=300, max_eval_samples=50, seed=6)
    assert set(other.train["idx"]) | set(other.quiz["idx"]) != rows
    assert other.dev["idx"] == td.dev["idx"]  # the dev subset does not depend on the run's seed
    assert td.dev["idx"] == sorted(td.dev["idx"])
    with raises_user_error("max_train_samples", "0"):
        load_task_data(task, data_dir, max_train_samples=0)


# ---- the task table --------------------------------------------------------------------------------

def test_task_table():
    assert list(TASKS) == ["sst2", "cola", "mrpc", "stsb", "chemprot", "gad"]
    assert get_task("SST2") is TASKS["sst2"]
    stsb = get_task("stsb")
    assert stsb.is_regression and stsb.num_labels == 1
    assert stsb.id2label == {0: "score"} and stsb.label2id == {"score": 0}
    assert dict(stsb.hub.columns) == {"label": "score"}
    mrpc = get_task("mrpc")
    assert mrpc.text_columns == ("sentence1", "sentence2") and mrpc.primary_metric == "f1"
    assert mrpc.hub.path == "nyu-mll/glue" and mrpc.hub.config == "mrpc"
    chemprot = get_task("chemprot")
    assert chemprot.labels == CHEMPROT_LABELS == tuple(sorted(CHEMPROT_LABELS))
    assert chemprot.num_labels == 13 and chemprot.id2label[8] == "INHIBITOR"
    assert chemprot.label2id["INHIBITOR"] == 8
    for task in TASKS.values():
        assert len(task.id2label) == len(task.label2id) == task.num_labels, task.name


def test_unknown_task():
    with raises_user_error("'nosuchtask'", "sst2", "chemprot", "folder"):
        get_task("nosuchtask")


def test_table_task_rejects_byo_columns():
    with raises_user_error("'review'", "text_columns"):
        get_task("sst2", text_columns="review")


# ---- bring your own --------------------------------------------------------------------------------

def test_byo_tsv_string_labels(tmp_path):
    write(tmp_path / "train.tsv", tsv([("review", "label"), ("NA", "pos"), ("null", "neg"), ("nan", "pos"),
                                       ("None", "neg"), ("a \"quoted' text", "pos")]))
    write(tmp_path / "dev.tsv", tsv([("review", "label"), ("good", "pos"), ("bad", "neg")]))
    task = get_task(str(tmp_path), text_columns="review", label_column="label")
    assert task.labels == ("neg", "pos") and not task.is_regression
    assert task.metrics == ("accuracy", "f1") and task.path == str(tmp_path)
    td = load_task_data(task, None, quiz_fraction=0.2)
    rows = sorted((row["idx"], row["review"], row["labels"]) for split in (td.train, td.quiz) for row in split)
    assert rows == [(0, "NA", 1), (1, "null", 0), (2, "nan", 1), (3, "None", 0), (4, "a \"quoted' text", 1)]
    assert td.dev["labels"] == [1, 0]


def test_byo_csv_pair_with_integer_labels(tmp_path):
    write(tmp_path / "train.csv", 'q,p,y\n"a, b",c,2\nd,"e ""f""",10\ng,h,1\ni,j,2\n')
    write(tmp_path / "dev.csv", "q,p,y\nk,l,10\n")
    task = get_task(str(tmp_path), text_columns="q, p", label_column="y")
    assert task.text_columns == ("q", "p")
    assert task.labels == ("1", "2", "10")  # numeric order
    assert task.metrics == ("accuracy", "macro_f1")
    splits = load_splits(task, None)
    assert splits["train"]["q"][:2] == ["a, b", "d"] and splits["train"]["p"][1] == 'e "f"'
    assert splits["train"]["labels"] == [1, 2, 0, 1] and splits["dev"]["labels"] == [2]


def test_byo_jsonl_float_labels_are_regression(tmp_path):
    lines = [{"text": "x", "score": 0.5}, {"text": 5, "score": 3}, {"text": "NA", "score": 4.25}]
    write(tmp_path / "train.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    write(tmp_path / "dev.jsonl", json.dumps({"text": "y", "score": "1.5"}) + "\n")
    task = get_task(str(tmp_path), text_columns="text", label_column="score")
    assert task.is_regression and task.num_labels == 1 and task.primary_metric == "pearson"
    splits = load_splits(task, None)
    assert splits["train"]["text"] == ["x", "5", "NA"]
    assert splits["train"]["labels"] == [0.5, 3.0, 4.25]
    assert splits["dev"]["labels"] == [1.5]
    assert splits["train"].features["labels"].dtype == "float32"


def test_byo_integer_valued_numbers_are_classes(tmp_path):
    write(tmp_path / "train.jsonl", "".join(json.dumps({"t": str(i), "y": float(i % 2)}) + "\n" for i in range(6)))
    write(tmp_path / "dev.tsv", tsv([("t", "y"), ("a", "1"), ("b", "0.0")]))
    task = get_task(str(tmp_path), text_columns="t", label_column="y")
    assert task.labels == ("0", "1")
    assert load_splits(task, None)["dev"]["labels"] == [1, 0]


def test_byo_without_label_column(tmp_path):
    write(tmp_path / "train.tsv", tsv([("text", "label"), ("a", "x")]))
    write(tmp_path / "dev.tsv", tsv([("text", "label"), ("a", "x")]))
    with raises_user_error("label_column", "None"):
        get_task(str(tmp_path), text_columns="text")


def test_byo_missing_label_column_in_file(tmp_path):
    write(tmp_path / "train.tsv", tsv([("text", "label"), ("a", "x"), ("b", "y")]))
    write(tmp_path / "dev.tsv", tsv([("text", "label"), ("a", "x")]))
    with raises_user_error("'gold'", "text, label", "train.tsv"):
        get_task(str(tmp_path), text_columns="text", label_column="gold")


@pytest.mark.parametrize("files, missing", [({"train.tsv"}, "dev"), ({"dev.csv", "train.txt"}, "train")])
def test_byo_folder_without_split_file(tmp_path, files, missing):
    for name in files:
        write(tmp_path / name, "text\tlabel\na\tx\n")
    with raises_user_error(f"no {missing} file", str(tmp_path), f"{missing}.tsv"):
        get_task(str(tmp_path), text_columns="text", label_column="label")


def test_byo_dev_label_outside_train_labels(tmp_path):
    write(tmp_path / "train.tsv", tsv([("text", "label"), ("a", "x"), ("b", "y")]))
    write(tmp_path / "dev.tsv", tsv([("text", "label"), ("a", "x"), ("c", "z")]))
    task = get_task(str(tmp_path), text_columns="text", label_column="label")
    with raises_user_error("'z'", "data row 2", "dev.tsv", "x, y"):
        load_splits(task, None)


# ---- bad files of a table task ---------------------------------------------------------------------

@pytest.fixture
def sst2_dir(tmp_path):
    """A data dir whose sst2 copy the test writes; dev is valid."""
    write(tmp_path / "sst2" / "dev.tsv", tsv([("sentence", "label"), ("fine", 1), ("bad", 0)]))
    return tmp_path


def test_missing_column(sst2_dir):
    write(sst2_dir / "sst2" / "train.tsv", tsv([("text", "label"), ("fine", 1)]))
    with raises_user_error("'sentence'", "text, label", "train.tsv"):
        load_task_data(TASKS["sst2"], str(sst2_dir))


def test_label_outside_label_set(sst2_dir):
    write(sst2_dir / "sst2" / "train.tsv", tsv([("sentence", "label"), ("a", 1), ("b", 0), ("c", "positive")]))
    with raises_user_error("'positive'", "data row 3", "0, 1"):
        load_task_data(TASKS["sst2"], str(sst2_dir))


@pytest.mark.parametrize("content", ["", "sentence\tlabel\n"])
def test_empty_file(sst2_dir, content):
    path = write(sst2_dir / "sst2" / "train.tsv", content)
    with raises_user_error("empty file", str(path)):
        load_task_data(TASKS["sst2"], str(sst2_dir))


@pytest.mark.parametrize("content", [b"sentence\tlabel\n\xff\xfe bad bytes\t1\n",
                                     b"sentence\tlabel\na\t1\textra field\n",
                                     b"sentence\tlabel\na\t1\nb\t0\textra field\n"])
def test_unreadable_file(sst2_dir, content):
    path = sst2_dir / "sst2" / "train.tsv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    with raises_user_error("cannot read", str(path)):
        load_task_data(TASKS["sst2"], str(sst2_dir))


def test_non_numeric_regression_target(tmp_path):
    header = ("sentence1", "sentence2", "score")
    write(tmp_path / "stsb" / "train.tsv", tsv([header, ("a", "b", "1.5"), ("c", "d", "high")]))
    write(tmp_path / "stsb" / "dev.tsv", tsv([header, ("a", "b", "2.0")]))
    with raises_user_error("'high'", "data row 2", "train.tsv"):
        load_task_data(TASKS["stsb"], str(tmp_path))


def test_no_local_copy_and_hub_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    with raises_user_error(str(tmp_path / "sst2"), "TUNER_DATA_DIR", "--data-dir", "nyu-mll/glue"):
        load_task_data(TASKS["sst2"], str(tmp_path))


def test_no_local_copy_of_a_task_without_hub_source(tmp_path):
    with raises_user_error(str(tmp_path / "chemprot"), "local copy is required", "TUNER_DATA_DIR"):
        load_task_data(TASKS["chemprot"], str(tmp_path))


# ---- tokenising and batching ----------------------------------------------------------------------

def test_tokenize_and_batch_single_sentences(raw, minilm_tokenizer):
    rows = raw["sst2"]["dev"].select(range(6))
    tokenized = tokenize_split(rows, minilm_tokenizer, TASKS["sst2"], max_seq_length=16)
    assert set(tokenized.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    lengths = [len(ids) for ids in tokenized["input_ids"]]
    assert max(lengths) == 16 and min(lengths) < 16  # truncated, not padded at map time

    batches = list(make_loader(tokenized, minilm_tokenizer, batch_size=4, shuffle=False))
    assert [len(b["labels"]) for b in batches] == [4, 2]
    batch = batches[0]
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert all(isinstance(v, torch.Tensor) for v in batch.values())
    assert batch["input_ids"].shape == (4, max(lengths[:4]))
    assert batch["labels"].tolist() == rows["labels"][:4]
    mask = batch["attention_mask"]
    assert mask.sum(dim=1).tolist() == lengths[:4]
    assert (batch["input_ids"][mask == 0] == minilm_tokenizer.pad_token_id).all()


def test_tokenize_pairs_and_regression_labels(raw, minilm_tokenizer):
    rows = raw["stsb"]["dev"].select(range(4))
    tokenized = tokenize_split(rows, minilm_tokenizer, TASKS["stsb"], max_seq_length=64)
    batch = next(iter(make_loader(tokenized, minilm_tokenizer, batch_size=4, shuffle=False)))
    assert batch["labels"].dtype == torch.float32
    assert batch["labels"].tolist() == pytest.approx(rows["labels"])
    assert (batch["token_type_ids"] == 1).any()  # the second sentence is segment 1


def test_shuffled_loader_is_seeded(raw, minilm_tokenizer):
    tokenized = tokenize_split(raw["sst2"]["dev"].select(range(32)), minilm_tokenizer, TASKS["sst2"], 32)

    def order(seed):
        loader = make_loader(tokenized, minilm_tokenizer, batch_size=8, shuffle=True, seed=seed)
        return [b["input_ids"][:, 1].tolist() for b in loader]

    assert order(0) == order(0)
    assert order(0) != order(1)


def test_byo_numeric_labels_with_a_non_numeric_value_ask_for_the_task_type(tmp_path):
    write(tmp_path / "train.tsv", tsv([("t", "y"), ("a", "0.5"), ("b", "1.25"), ("c", "n/a"), ("d", "2.0")]))
    write(tmp_path / "dev.tsv", tsv([("t", "y"), ("e", "1.5")]))
    with raises_user_error("numeric except at 1 data row(s): 3 ('n/a')", "--task-type classification"):
        get_task(str(tmp_path), text_columns="t", label_column="y")
    with raises_user_error("numeric except at 1 data row(s): 3 ('n/a')"):
        get_task(str(tmp_path), text_columns="t", label_column="y", task_type="regression")
    task = get_task(str(tmp_path), text_columns="t", label_column="y", task_type="classification")
    assert task.labels == ("0.5", "1.25", "2", "n/a") and not task.is_regression


def test_byo_task_type_overrides_the_inferred_one(tmp_path):
    write(tmp_path / "train.tsv", tsv([("t", "y"), ("a", "1"), ("b", "2"), ("c", "3")]))
    write(tmp_path / "dev.tsv", tsv([("t", "y"), ("d", "2")]))
    assert get_task(str(tmp_path), text_columns="t", label_column="y").labels == ("1", "2", "3")
    task = get_task(str(tmp_path), text_columns="t", label_column="y", task_type="regression")
    assert task.is_regression and load_splits(task, None)["train"]["labels"] == [1.0, 2.0, 3.0]
    with raises_user_error("task_type='regression' does not apply to table task 'sst2'"):
        get_task("sst2", task_type="regression")


def test_an_id_column_passed_as_the_label_is_a_clear_error_naming_the_label_like_columns(tmp_path):
    rows = [("index", "sentence", "label")] + [(str(i), f"text {i}", str(i % 2)) for i in range(240)]
    write(tmp_path / "train.tsv", tsv(rows))
    write(tmp_path / "dev.tsv", tsv(rows[:5]))
    with raises_user_error("'index'", "240 distinct values in 240 rows", "looks like an id",
                           "'label' (2 values)", "--label-column"):
        get_task(str(tmp_path), text_columns="sentence", label_column="index")
    # the right column works, and an explicit task type keeps the many classes when meant
    assert get_task(str(tmp_path), text_columns="sentence", label_column="label").labels == ("0", "1")
    assert len(get_task(str(tmp_path), text_columns="sentence", label_column="index",
                        task_type="classification").labels) == 240


def test_a_byo_folder_under_the_data_dir_is_found_by_its_short_name(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "rte"
    folder.mkdir(parents=True)
    write(folder / "train.tsv", tsv([("s1", "s2", "label"), ("a", "b", "entailment"), ("c", "d", "not")]))
    write(folder / "dev.tsv", tsv([("s1", "s2", "label"), ("e", "f", "not")]))
    monkeypatch.chdir(tmp_path)  # no ./rte here: found under the data dir only
    task = get_task("rte", "s1,s2", "label", data_dir=str(tmp_path / "data"))
    assert task.name == "rte" and task.path == str(folder) and task.labels == ("entailment", "not")
    monkeypatch.setenv("TUNER_DATA_DIR", str(tmp_path / "data"))  # the env var as the default data dir
    assert get_task("rte", "s1,s2", "label").path == str(folder)
    with raises_user_error("unknown task 'qnli'", f"a folder under the data dir {tmp_path / 'data'}"):
        get_task("qnli", "s1,s2", "label")


def test_saved_models_name_their_labels_while_data_rows_map_by_their_values():
    sst2 = get_task("sst2")
    assert sst2.id2label == {0: "negative", 1: "positive"} and sst2.config_label2id == {"negative": 0, "positive": 1}
    assert sst2.label2id == {"0": 0, "1": 1}  # the files' label values
    assert get_task("chemprot").id2label[8] == "INHIBITOR"
