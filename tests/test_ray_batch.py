"""``whisperpool ray transcribe`` on a real local Ray cluster (2 CPUs, started here, shut
down after): a folder of real clips with a bad file among them, the local CLI's output
for the same files, and a resumed run. The input listing and the resume reading are
checked without Ray."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MAX_WER, clip
from whisperpool.bench import CLIPS
from whisperpool.cli import EXIT_SOME_FAILED, batch_config, build_parser, main
from whisperpool.cluster.batch import BatchConfig, transcribe_batch
from whisperpool.cluster.inputs import list_inputs, read_done
from whisperpool.errors import ConfigError
from whisperpool.wer import word_error_rate

ray = pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'whisperpool[ray]'")

SHORT = ("s3-pasta", "s3-weather")
OPTIONS = ["--language", "en", "--no-progress"]


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    texts = json.loads((CLIPS / "texts.json").read_text())
    return texts | json.loads((CLIPS / "short" / "texts.json").read_text())


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """4 real clips (two in a sub-folder), a file that is not audio, and a note to ignore."""
    root = tmp_path_factory.mktemp("clips")
    (root / "sub").mkdir()
    for name in ("fox", "groceries"):
        shutil.copy(clip(name), root / f"{name}.wav")
    for name in SHORT:
        shutil.copy(CLIPS / "short" / f"{name}.wav", root / "sub" / f"{name}.wav")
    (root / "sub" / "bad.wav").write_bytes(b"RIFF not really a wave file" * 100)
    (root / "notes.txt").write_text("not audio, not listed")
    return root


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for this module: the commands join it, and leave it running."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
    yield
    ray.shutdown()


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def ray_run(cluster, folder, tmp_path_factory) -> tuple[int, Path]:
    output = tmp_path_factory.mktemp("out") / "results.jsonl"
    code = main(["ray", "transcribe", str(folder), "--output", str(output), "--actors", "2", *OPTIONS])
    return code, output


@pytest.mark.ray
@pytest.mark.real_model
def test_a_folder_is_transcribed_one_record_a_file_and_a_bad_file_is_only_its_own_error(ray_run, folder, texts):
    code, output = ray_run
    assert code == EXIT_SOME_FAILED  # the bad file, and only it
    records = {Path(r["file"]).stem: r for r in _records(output)}
    assert sorted(records) == sorted(["bad", "fox", "groceries", *SHORT])
    assert len(_records(output)) == 5
    assert records["bad"]["error"]["type"] == "InvalidAudio"
    assert records["bad"]["file"] == str(folder / "sub" / "bad.wav")
    for name in ("fox", "groceries", *SHORT):
        assert "error" not in records[name], records[name]
        assert word_error_rate(texts[name], records[name]["text"]) <= MAX_WER, records[name]["text"]


@pytest.mark.ray
@pytest.mark.real_model
def test_its_records_are_the_local_clis_transcribe_json(ray_run, folder):
    local = io.StringIO()
    with contextlib.redirect_stdout(local):
        code = main(["transcribe", str(folder), "--json", "--workers", "2", *OPTIONS])
    assert code == EXIT_SOME_FAILED
    theirs = {r["file"]: r for r in map(json.loads, local.getvalue().splitlines())}
    ours = {r["file"]: r for r in _records(ray_run[1])}
    assert sorted(ours) == sorted(theirs) and len(ours) == 5
    for file, record in ours.items():
        assert record.keys() == theirs[file].keys(), file
        if "error" in record:
            assert record["error"]["type"] == theirs[file]["error"]["type"]
            continue
        for key in ("text", "language", "duration"):
            assert record[key] == theirs[file][key], (file, key)
        assert [s["text"] for s in record["segments"]] == [s["text"] for s in theirs[file]["segments"]]


@pytest.mark.ray
@pytest.mark.real_model
def test_a_stopped_run_resumes_with_only_the_files_missing_from_its_output(ray_run, folder, tmp_path):
    first = _records(ray_run[1])
    kept, planted, cut = first[:2], dict(first[2], text="PLANTED: must not be redone"), first[3]
    output = tmp_path / "results.jsonl"
    lines = [json.dumps(r) for r in (*kept, planted)]
    # a run stopped while writing its fourth line: half a record, no newline
    output.write_text("\n".join(lines) + "\n" + json.dumps(cut)[:40])

    code = main(
        ["ray", "transcribe", str(folder), "--output", str(output), "--min-actors", "1", "--max-actors", "2", *OPTIONS]
    )  # autoscaled, this time

    assert code == EXIT_SOME_FAILED  # the bad file's record is among the kept ones or the new ones
    records = _records(output)  # every line whole again
    assert sorted(r["file"] for r in records[3:]) == sorted([cut["file"], first[4]["file"]])  # only those done
    assert output.read_text().splitlines()[:3] == lines  # the earlier lines untouched
    assert sorted(r["file"] for r in records) == sorted(r["file"] for r in first)  # each file once
    assert records[2]["text"].startswith("PLANTED")


@pytest.mark.ray
@pytest.mark.real_model
def test_a_command_joins_the_cluster_ray_address_names_and_reads_uris(cluster, folder, tmp_path):
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    output = tmp_path / "uris.jsonl"
    command = ["ray", "transcribe", f"file://{folder}/sub", "-o", str(output), *OPTIONS]
    proc = subprocess.run(
        [sys.executable, "-m", "whisperpool.cli", *command], env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == EXIT_SOME_FAILED, proc.stderr[-3000:]
    assert "Connecting to existing Ray cluster" in proc.stderr  # this module's, not one of its own
    records = {r["file"]: r for r in _records(output)}  # named by their URIs
    assert sorted(records) == sorted(f"file://{folder}/sub/{name}.wav" for name in ("bad", *SHORT))
    assert "error" in records[f"file://{folder}/sub/bad.wav"]
    assert all("text" in records[f"file://{folder}/sub/{name}.wav"] for name in SHORT)


def test_inputs_are_files_folders_globs_and_uris_each_once(folder):
    fox, pasta = str(folder / "fox.wav"), str(folder / "sub" / "s3-pasta.wav")
    assert list_inputs([str(folder / "sub")]) == sorted(str(p) for p in (folder / "sub").glob("*.wav"))
    assert list_inputs([str(folder / "*.wav"), fox]) == [fox, str(folder / "groceries.wav")]
    assert list_inputs([str(folder / "**" / "s3-p*.wav")]) == [pasta]
    assert list_inputs([f"file://{folder}/sub"]) == sorted(f"file://{p}" for p in (folder / "sub").glob("*.wav"))
    assert list_inputs([str(folder / "missing.wav")]) == [str(folder / "missing.wav")]  # reported by the run


def test_a_missing_file_is_an_error_record_without_a_cluster(tmp_path):
    output = tmp_path / "out.jsonl"
    summary = transcribe_batch([str(tmp_path / "gone.wav")], output)
    (record,) = _records(output)
    assert record == {
        "file": str(tmp_path / "gone.wav"),
        "error": {"type": "InvalidAudio", "message": f"{tmp_path / 'gone.wav'}: no such file"},
    }
    assert (summary.failed, summary.failed_in_output) == (1, 1)


def test_resume_refuses_to_append_to_a_file_that_is_not_its_output(tmp_path):
    other = tmp_path / "notes.jsonl"
    other.write_text('{"file": "a.wav", "text": "hi"}\nsomething else\n')
    with pytest.raises(ConfigError, match="notes.jsonl:2"):
        read_done(other)
    assert read_done(tmp_path / "none.jsonl") == {}


@pytest.mark.ray
@pytest.mark.real_model
def test_the_actors_run_the_whispercpp_backend(cluster, texts, tmp_path):
    """``--backend whispercpp`` reaches the actors' engines: ``base-q8_0`` is a model only
    whisper.cpp loads (faster-whisper would fail to start: exit code 3)."""
    output = tmp_path / "cpp.jsonl"
    files = [str(CLIPS / "short" / f"{name}.wav") for name in SHORT]
    args = ["--backend", "whispercpp", "--model", "base-q8_0", "--actors", "1", "--threads", "2", *OPTIONS]
    assert main(["ray", "transcribe", *files, "--output", str(output), *args]) == 0
    records = {Path(r["file"]).stem: r for r in _records(output)}
    assert sorted(records) == sorted(SHORT)
    for name in SHORT:
        assert word_error_rate(texts[name], records[name]["text"]) <= MAX_WER, records[name]


def test_ray_transcribe_flags_map_to_the_batch_config():
    args = build_parser().parse_args(
        ["ray", "transcribe", "in/", "-o", "out.jsonl", "--min-actors", "1", "--max-actors", "4"]
        + ["--workers-per-actor", "2", "--threads", "3", "--language", "de", "--beam-size", "5"]
    )
    config = batch_config(args)
    assert (config.min_actors, config.max_actors, config.actors) == (1, 4, None)
    assert (config.pool.pool_size, config.pool.threads_per_worker, config.cpus_per_actor) == (2, 3, 6)
    assert (config.pool.decode.language, config.pool.decode.beam_size) == ("de", 5)
    assert config.actor_range(16) == (1, 4)
    assert BatchConfig().actor_range(5) == (5, 5)  # 1 worker x 1 thread: one actor a CPU
    with pytest.raises(ConfigError, match="min_actors"):
        BatchConfig(min_actors=1)


@pytest.mark.ray
def test_actors_that_cannot_start_their_engines_are_exit_code_3(cluster, tmp_path, capsys):
    code = main(
        ["ray", "transcribe", str(clip("fox")), "-o", str(tmp_path / "o.jsonl"), "--model", str(tmp_path / "none")]
    )
    assert code == 3
    assert "model folder does not exist" in capsys.readouterr().err


def test_without_the_ray_extra_the_command_names_it_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if it were not installed
    assert main(["ray", "transcribe", str(clip("fox")), "-o", str(tmp_path / "o.jsonl")]) == 2
    assert "pip install 'whisperpool[ray]'" in capsys.readouterr().err


def test_the_cli_and_the_cluster_face_import_without_ray():
    code = "import sys\nsys.modules['ray'] = None\nimport whisperpool.cli, whisperpool.cluster.batch\n"
    code += "whisperpool.cli.build_parser().parse_args(['ray', 'transcribe', '--help'])\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--workers-per-actor" in proc.stdout


def test_the_bench_folder_repeats_the_clips_to_the_files_asked(tmp_path):
    from whisperpool.bench import BenchOptions
    from whisperpool.bench.ray_batch import _folder

    made = _folder(tmp_path, 40)  # the 31 clips, then 9 of them again
    assert len(made) == len(set(made)) == 40 == len(list(tmp_path.glob("*.wav")))
    assert made[31].name == "c1-" + made[0].name.removeprefix("c0-")
    assert build_parser().parse_args(["bench", "--ray-batch", "--files", "500"]).files == 500
    assert BenchOptions().files == 600
    with pytest.raises(ConfigError, match="files"):
        BenchOptions(files=0)
