"""`mpnas data list` / `mpnas data preview`, and bad input through the CLI: one line on stderr, exit 2."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from mpnas.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_json(capsys, builtin_set, builtin_cache):
    code, out, _ = run(capsys, "data", "list", "--data", "builtin", "--json", "--resolution", "16",
                       "--cache-dir", str(builtin_cache))
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == builtin_set.names()
    for row, d in zip(rows, builtin_set):
        assert row["num_classes"] == d.num_classes
        assert row["splits"] == {s: len(d.splits[s]) for s in ("train", "val", "test")}
        assert row["resolution"] == 16 and row["class_names"] == d.class_names


def test_list_table_with_selection(capsys, builtin_set, builtin_cache):
    code, out, _ = run(capsys, "data", "list", "--domains", "faces, digits", "--resolution", "16",
                       "--cache-dir", str(builtin_cache))
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:5] == ["domain", "classes", "train", "val", "test"]
    assert lines[1].split()[:5] == ["faces", "2", "140", "30", "30"]
    assert lines[2].split()[0] == "digits" and lines[-1] == "2 domain(s), 1,997 images"


def test_list_marks_unlabelled_test(capsys, decathlon_root, tmp_path):
    code, out, _ = run(capsys, "data", "list", "--data", f"decathlon:{decathlon_root}", "--resolution", "16",
                       "--cache-dir", str(tmp_path / "c"))
    assert code == 0 and "3 (unlabelled)" in out
    code, out, _ = run(capsys, "data", "list", "--data", f"decathlon:{decathlon_root}", "--json", "--resolution", "16",
                       "--cache-dir", str(tmp_path / "c"))
    assert json.loads(out)[1]["splits"] == {"train": 8, "val": 4, "test": 2}


def test_preview_writes_a_grid(capsys, builtin_set, builtin_cache, tmp_path):
    out = tmp_path / "grid.png"
    code, _, _ = run(capsys, "data", "preview", "--out", str(out), "--per-domain", "4", "--resolution", "16",
                     "--cache-dir", str(builtin_cache))
    assert code == 0
    with Image.open(out) as im:
        width, height = im.size
    assert width > 300 and height > 6 * 100


@pytest.mark.parametrize("make_argv, message", [
    (lambda root, tmp: ["--data", "builtin", "--domains", "digits,nope"], "unknown domain 'nope'"),
    (lambda root, tmp: ["--data", f"decathlon:{tmp / 'missing'}"], "not a directory"),
    (lambda root, tmp: ["--data", f"imagenet:{root}"], "unknown source"),
    (lambda root, tmp: ["--data", f"decathlon:{root}", "--resolution", "3"], "resolution 3"),
])
def test_errors_are_one_line(capsys, decathlon_root, tmp_path, builtin_cache, make_argv, message):
    argv = ["data", "list", *make_argv(decathlon_root, tmp_path), "--cache-dir", str(builtin_cache)]
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("mpnas: error: ") and message in err
    assert "Traceback" not in err


def test_broken_annotation_through_cli(capsys, decathlon_root, tmp_path):
    (decathlon_root / "annotations" / "gtsrb_val.json").write_text("{not json")
    code, _, err = run(capsys, "data", "list", "--data", f"decathlon:{decathlon_root}", "--cache-dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "gtsrb_val.json: broken JSON" in err


def test_skip_bad_images_through_cli(capsys, folder_root, tmp_path):
    (folder_root / "pets" / "train" / "dog" / "3.png").write_bytes(b"\x00" * 20)
    argv = ["data", "list", "--data", f"folder:{folder_root}", "--json", "--cache-dir", str(tmp_path)]
    code, _, err = run(capsys, *argv)
    assert code == 2 and "dog/3.png: corrupt image" in err and "--skip-bad-images" in err
    code, out, err = run(capsys, *argv, "--skip-bad-images")
    assert code == 0 and "domain 'pets': skipped 1 corrupt image(s)" in err
    pets = json.loads(out)[0]
    assert pets["splits"]["train"] + pets["splits"]["val"] == 23
