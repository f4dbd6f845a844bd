"""Rule 3 of docs/RELIABILITY.md: a run never destroys or overwrites data it did not create.

Most cases run the real ``restore`` command in this process (run_main, the entry point's own
error policy) for speed; the concurrency cases use real separate processes."""
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from restore.runtime.cli import cli, run_main
from restore.runtime.outputs import output_lock


def restore(*args, cwd=None, capfd=None):
    """(exit code, stderr) of ``restore ARGS`` run in this process."""
    argv, here = sys.argv, os.getcwd()
    sys.argv = ["restore", *map(str, args)]
    try:
        if cwd:
            os.chdir(cwd)
        with pytest.raises(SystemExit) as exit_info:
            run_main(cli, "restore")
    finally:
        sys.argv = argv
        os.chdir(here)
    err = capfd.readouterr().err if capfd is not None else ""
    return exit_info.value.code, err


def one_error_line(err, code, got):
    lines = [line for line in err.splitlines() if line.startswith("restore: error:")]
    assert got == code, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def snapshot(folder):
    """Every file under ``folder`` (symlinks as their target text) -> bytes."""
    files = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_symlink():
            files[str(p)] = ("link", os.readlink(p))
        elif p.is_file():
            files[str(p)] = p.read_bytes()
    return files


@pytest.fixture
def photo(tmp_path, kit):
    path = tmp_path / "p" / "a.png"
    path.parent.mkdir()
    cv2.imwrite(str(path), kit.noise((40, 48, 3)))
    return path


# --- output that is an input -------------------------------------------------------------------
@pytest.mark.parametrize("how", ["same path", "dot path", "symlink", "hard link", "folder onto itself", "empty -o", "cwd"])
def test_output_that_is_an_input_is_refused_and_the_input_kept(photo, tiny_model, capfd, how):
    folder = photo.parent
    before = photo.read_bytes()
    cwd = None
    if how == "same path":
        args = [photo, "-o", photo]
    elif how == "dot path":
        args = [photo, "-o", f"{folder}/./{photo.name}"]
    elif how == "symlink":
        (folder / "link.png").symlink_to(photo)
        args = [photo, "-o", folder / "link.png"]
    elif how == "hard link":
        os.link(photo, folder / "twin.png")
        args = [photo, "-o", folder / "twin.png"]
    elif how == "folder onto itself":
        args = [folder, "-o", folder]
    elif how == "empty -o":
        args = [photo, "-o", ""]
    else:
        args, cwd = [photo.name, "-o", "."], folder
    code, err = restore("run", *args, "--model", tiny_model, "-q", cwd=cwd, capfd=capfd)
    one_error_line(err, 7, code)
    assert photo.read_bytes() == before
    assert not [p for p in folder.iterdir() if ".partial" in p.name]


def test_overwrite_replaces_the_input_with_its_result_atomically(photo, tiny_model, capfd):
    before = photo.read_bytes()
    inode = photo.stat().st_ino
    code, err = restore("run", photo, "-o", photo, "--model", tiny_model, "--overwrite", "-q", capfd=capfd)
    assert code == 0, err
    assert photo.read_bytes() != before
    assert photo.stat().st_ino != inode, "replaced by a rename, not rewritten in place"
    assert cv2.imread(str(photo)).shape == (40, 48, 3)


# --- -o naming -----------------------------------------------------------------------------------
def test_two_inputs_into_an_image_name_is_refused_and_makes_no_folder(tmp_path, kit, tiny_model, capfd):
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), kit.noise((32, 32, 3)))
    code, err = restore("run", tmp_path / "a.png", tmp_path / "b.png", "-o", tmp_path / "two.png", "--model", tiny_model, capfd=capfd)
    assert "two.png" in one_error_line(err, 7, code)
    assert not (tmp_path / "two.png").exists()
    code, err = restore("run", tmp_path / "a.png", tmp_path / "b.png", "-o", f"{tmp_path / 'two.png'}/", "--model", tiny_model, "-q", capfd=capfd)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "two.png").iterdir()) == ["a.png", "b.png"]


def test_dash_output_for_an_image_is_an_error(photo, tiny_model, capfd):
    code, err = restore("run", photo, "-o", "-", "--model", tiny_model, cwd=photo.parent, capfd=capfd)
    one_error_line(err, 7, code)
    assert not (photo.parent / "-").exists()


# --- partial files -------------------------------------------------------------------------------
def test_partial_names_never_touch_files_this_run_did_not_make(tmp_path, kit, tiny_model, capfd):
    d, out = tmp_path / "d", tmp_path / "out"
    d.mkdir()
    out.mkdir()
    source = kit.write_video(d / "holiday.partial.avi", frames=6)
    (d / ".holiday.partial.avi").write_bytes(b"a user's hidden file")
    (out / "holiday.partial.avi").write_bytes(b"an unrelated user file")
    before = snapshot(tmp_path)
    code, err = restore("run", source, "-o", d / "holiday.avi", "--model", tiny_model, "-q", capfd=capfd)
    assert code == 0, err
    code, err = restore("run", source, "-o", out / "holiday.avi", "--model", tiny_model, "-q", capfd=capfd)
    assert code == 0, err
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, "a file that was there changed or went"
    assert sorted(set(after) - set(before)) == [str(d / "holiday.avi"), str(out / "holiday.avi")]
    assert kit.decodable_frames(out / "holiday.avi") == 6


# --- concurrent writers --------------------------------------------------------------------------
def test_a_second_writer_of_a_locked_output_fails_clearly(photo, tiny_model, kit):
    out = photo.parent / "out.png"
    with output_lock(out):
        result = kit.run_cli("restore", "run", photo, "-o", out, "--model", tiny_model, "-q")
    line = kit.assert_user_error(result, "restore", 5, out)
    assert "another restore process" in line and f"pid {os.getpid()}" in line
    assert not out.exists() and kit.leftovers(photo.parent) == []
    assert not list(photo.parent.glob(".*restore-lock")), "the lock file is removed by its holder"


def test_two_processes_writing_one_video_one_wins_and_the_other_says_so(tmp_path, kit, tiny_model):
    first = kit.write_video(tmp_path / "first.avi", frames=60, size=(96, 64))
    second = kit.write_video(tmp_path / "second.avi", frames=30, size=(96, 64))
    out = tmp_path / "out.avi"
    procs = [subprocess.Popen([sys.executable, "-c", kit.ENTRY_POINTS["restore"], "run", str(src), "-o", str(out), "--model", str(tiny_model), "-q"],
                              stderr=subprocess.PIPE, text=True) for src in (first, second)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    if codes == [0, 0]:  # the first finished before the second started: both true, last one wins
        assert kit.decodable_frames(out) in (60, 30)
        return
    assert codes == [0, 5], results
    winner = [src for src, (code, _) in zip((first, second), results) if code == 0][0]
    loser_err = [err for code, err in results if code == 5][0]
    assert "another restore process" in loser_err and "disk full" not in loser_err
    assert kit.decodable_frames(out) == (60 if winner == first else 30)
    assert kit.leftovers(tmp_path) == []


# --- frames, detect, demo, train ---------------------------------------------------------------
def test_frames_into_a_folder_with_earlier_frames_is_refused(tmp_path, kit, tiny_model, capfd):
    video = kit.write_video(tmp_path / "clip.avi", frames=4)
    code, err = restore("run", video, "-o", tmp_path / "out", "--frames", "--model", tiny_model, "-q", capfd=capfd)
    assert code == 0, err
    frames = snapshot(tmp_path / "out")
    assert len(frames) == 4
    code, err = restore("run", video, "-o", tmp_path / "out", "--frames", "--model", tiny_model, "-q", capfd=capfd)
    assert str(tmp_path / "out" / "clip") in one_error_line(err, 5, code)
    assert snapshot(tmp_path / "out") == frames


def test_detect_keeps_one_report_per_input_when_stems_are_shared(tmp_path, kit, capfd):
    cv2.imwrite(str(tmp_path / "x.png"), kit.noise((64, 64, 3), seed=1))
    cv2.imwrite(str(tmp_path / "x.jpg"), kit.noise((64, 64, 3), seed=2))
    code, err = restore("detect", tmp_path / "x.png", tmp_path / "x.jpg", "-o", tmp_path / "r", capfd=capfd)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["x.jpg.blurmap.png", "x.jpg.json", "x.png.blurmap.png", "x.png.json"]
    (tmp_path / "b").mkdir()
    cv2.imwrite(str(tmp_path / "b" / "x.png"), kit.noise((64, 64, 3), seed=3))
    code, err = restore("detect", tmp_path / "x.png", tmp_path / "b" / "x.png", "-o", tmp_path / "s", capfd=capfd)
    one_error_line(err, 7, code)
    assert not (tmp_path / "s").exists()


def test_demo_does_not_write_over_a_users_folder(tmp_path, capfd):
    (tmp_path / "report.md").write_text("my notes")
    code, err = restore("demo", "-o", tmp_path, capfd=capfd)
    one_error_line(err, 5, code)
    assert (tmp_path / "report.md").read_text() == "my notes"


def test_eval_does_not_write_over_a_users_folder(tmp_path, capfd, checkpoint):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "grid.png").write_bytes(b"my picture")
    code, err = restore("eval", checkpoint, "-o", tmp_path / "out", "--no-baselines", capfd=capfd)
    one_error_line(err, 5, code)
    assert (tmp_path / "out" / "grid.png").read_bytes() == b"my picture"


def test_train_does_not_start_a_run_in_a_folder_of_user_files(tmp_path, capfd):
    pytest.importorskip("torch")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    config = Path(__file__).parents[2] / "trainer" / "configs" / "fourier-unet-deblur.yaml"
    code, err = restore("train", config, "--run-dir", tmp_path / "run", "--no-progress", capfd=capfd)
    assert "notes.txt" in one_error_line(err, 5, code)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["notes.txt"]


# --- export --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    pytest.importorskip("torch")
    from restore.trainer.checkpoint import save_checkpoint
    from restore.trainer.models import build_model

    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    save_checkpoint(path, build_model("fourier-unet", widths=[8, 16], blocks=1))
    return path


def test_export_into_a_folder_keeps_the_users_files_and_replaces_only_its_own(tmp_path, kit, checkpoint):
    out = tmp_path / "artifact"
    (out / "src").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "src" / "train.py").write_text("print('mine')")
    args = ("restore-export", checkpoint, "-o", out, "--tile", "32", "--batch", "1..2", "--target", "onnx", "--no-validate")
    for _ in range(2):  # into a folder of user files, then over its own earlier export
        result = kit.run_cli(*args)
        assert result.code == 0, result.stderr
        assert (out / "notes.txt").read_text() == "mine" and (out / "src" / "train.py").read_text() == "print('mine')"
    names = sorted(p.name for p in out.iterdir())
    assert names == ["metadata.json", "model.onnx", "model.plugin.onnx", "notes.txt", "src"], names


def test_export_refuses_to_write_over_a_users_file_of_the_same_name(tmp_path, kit, checkpoint):
    out = tmp_path / "artifact"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"my own model")
    result = kit.run_cli("restore-export", checkpoint, "-o", out, "--tile", "32", "--target", "onnx", "--no-validate")
    line = kit.assert_user_error(result, "restore-export", 5, out)
    assert "model.onnx" in line and "traced" not in result.stderr
    assert (out / "model.onnx").read_bytes() == b"my own model" and sorted(p.name for p in out.iterdir()) == ["model.onnx"]


# --- the rule, for layouts nobody listed ---------------------------------------------------------
BYSTANDERS = ["a.partial.png", ".a.partial.png", ".a.png.restore-lock.txt", "notes.txt", "sub/b.png", "sub/.a.png.restore-lock"]
OUTPUTS = ["{f}", "{d}", "{d}/", "{d}//", "{d}/.", "{d}/./a.png", "{d}/../p/a.png", "{link}", "{dirlink}", "{dirlink}/", "{hard}",
           "{d}/A.PNG", "{d}/sub", "{d}/sub/", "{d}/new/", "{d}/new.png", ".", ""]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(output=st.sampled_from(OUTPUTS), as_folder=st.booleans(), bystanders=st.sets(st.sampled_from(BYSTANDERS)))
def test_no_input_ever_changes_and_no_user_file_disappears(tmp_path_factory, kit, tiny_model, capfd, output, as_folder, bystanders):
    root = tmp_path_factory.mktemp("layout")
    d = root / "p"
    (d / "sub").mkdir(parents=True)
    cv2.imwrite(str(d / "a.png"), kit.noise((24, 24, 3)))
    for name in bystanders:
        (d / name).write_bytes(f"user data: {name}".encode())
    (root / "link.png").symlink_to(d / "a.png")
    (root / "dirlink").symlink_to(d)
    os.link(d / "a.png", root / "hard.png")
    before = snapshot(root)
    target = output.format(f=d / "a.png", d=d, link=root / "link.png", dirlink=root / "dirlink", hard=root / "hard.png")
    source = d if as_folder else d / "a.png"
    code, err = restore("run", source, "-o", target, "--model", tiny_model, "-q", cwd=d, capfd=capfd)
    assert code in (0, 5, 7, 8), err  # 8: a bystander in the input folder is not a real image
    assert "Traceback" not in err
    after = snapshot(root)
    for name, content in before.items():
        assert name in after, f"{name} disappeared (-o {target!r}, exit {code})"
        assert after[name] == content, f"{name} changed (-o {target!r}, exit {code})"
    assert not [n for n in after if n not in before and (".partial" in n or "restore-lock" in n)], sorted(set(after) - set(before))
    if code == 0:
        assert len(after) > len(before), "exit 0 but nothing new was written"
