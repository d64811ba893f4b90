"""The pktmask-nb command, run as a real subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from capture_builders import pcap_bytes, write


def pktmask(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pktmask_nb.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
    )


def test_demo_writes_sanitized_capture(tmp_path: Path, tshark: str) -> None:
    completed = pktmask("demo", "--no-progress", cwd=tmp_path)

    assert completed.returncode == 0, completed.stderr
    output = tmp_path / "tls12-demo-sanitized.pcap"
    assert output.is_file()
    frames = subprocess.run(["tshark", "-r", str(output)], capture_output=True, text=True, check=True)
    assert len(frames.stdout.splitlines()) == 22
    assert "packets in" in completed.stdout


def test_folder_input_mirrors_names(corpus_dir: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("zeek_ssh-dups.pcap", "cs_icmp_traceroute.pcapng"):
        shutil.copy(corpus_dir / name, inputs / name)
    (inputs / "notes.txt").write_text("not a capture")

    completed = pktmask("run", str(inputs), "-o", str(tmp_path / "out"), "--stages", "dedup")

    assert completed.returncode == 0, completed.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "cs_icmp_traceroute.pcapng",
        "zeek_ssh-dups.pcap",
    ]
    assert "duplicates     280" in completed.stdout


def test_folder_without_captures_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()

    completed = pktmask("run", str(tmp_path / "empty"), "-o", str(tmp_path / "out"))

    assert completed.returncode == 1
    assert completed.stderr.count("\n") == 1, "one line of error"
    assert "no capture files found" in completed.stderr
    assert not (tmp_path / "out").exists()


def test_truncated_capture_one_line_error(tmp_path: Path) -> None:
    source = write(tmp_path / "cut.pcap", pcap_bytes([(1, 0, b"\x01" * 60, 60)])[:-5])

    completed = pktmask("run", str(source), "-o", str(tmp_path / "out.pcap"), "--stages", "dedup")

    assert completed.returncode == 1
    assert completed.stderr.startswith(f"pktmask-nb: error: {source}, packet 1: the file ends inside")
    assert "editcap" in completed.stderr
    assert not (tmp_path / "out.pcap").exists()


def test_unknown_stage_is_an_error(tmp_path: Path) -> None:
    source = write(tmp_path / "a.pcap", pcap_bytes([]))

    completed = pktmask("run", str(source), "-o", str(tmp_path / "o.pcap"), "--stages", "dedup,compress")

    assert completed.returncode == 1
    assert "unknown stage compress" in completed.stderr


def test_every_subcommand_has_help() -> None:
    for command in ("run", "demo"):
        completed = pktmask(command, "--help")
        assert completed.returncode == 0
        assert "usage: pktmask-nb" in completed.stdout


def test_key_file_gives_same_mapping_across_runs(corpus_dir: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "key.hex"
    source = corpus_dir / "zeek_gre-sample.pcap"

    first = pktmask(
        "run",
        str(source),
        "-o",
        str(tmp_path / "a.pcap"),
        "--save-key",
        str(key_file),
        "--mapping-out",
        str(tmp_path / "a.csv"),
        "--no-progress",
    )
    second = pktmask(
        "run",
        str(source),
        "-o",
        str(tmp_path / "b.pcap"),
        "--key-file",
        str(key_file),
        "--mapping-out",
        str(tmp_path / "b.csv"),
        "--no-progress",
    )

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    assert "as sensitive" in first.stdout or "share it no more" in first.stdout
    assert key_file.read_text().strip() not in first.stdout + first.stderr, "the key is never printed"


def test_generated_key_not_saved_is_noted(corpus_dir: Path, tmp_path: Path) -> None:
    completed = pktmask(
        "run", str(corpus_dir / "zeek_gre-sample.pcap"), "-o", str(tmp_path / "o.pcap"), "--no-progress"
    )

    assert completed.returncode == 0, completed.stderr
    assert "--save-key" in completed.stderr


def test_no_stage_is_an_error(tmp_path: Path) -> None:
    source = write(tmp_path / "a.pcap", pcap_bytes([(1, 0, b"\x01" * 60, 60)]))

    completed = pktmask("run", str(source), "-o", str(tmp_path / "o.pcap"), "--stages", ",")

    assert completed.returncode == 1
    assert "unsanitized copy" in completed.stderr
    assert not (tmp_path / "o.pcap").exists()


def test_save_key_never_replaces_a_key(corpus_dir: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "anon.key"
    key_file.write_text("00" * 32)

    completed = pktmask(
        "run",
        str(corpus_dir / "zeek_gre-sample.pcap"),
        "-o",
        str(tmp_path / "o.pcap"),
        "--save-key",
        str(key_file),
    )

    assert completed.returncode == 1
    assert "--key-file" in completed.stderr
    assert key_file.read_text() == "00" * 32
    assert not (tmp_path / "o.pcap").exists()


def test_mapping_file_private_to_owner(corpus_dir: Path, tmp_path: Path) -> None:
    mapping = tmp_path / "map.csv"

    completed = pktmask(
        "run",
        str(corpus_dir / "zeek_gre-sample.pcap"),
        "-o",
        str(tmp_path / "o.pcap"),
        "--mapping-out",
        str(mapping),
        "--no-progress",
    )

    assert completed.returncode == 0, completed.stderr
    assert oct(mapping.stat().st_mode & 0o777) == "0o600"
    assert mapping.read_text().startswith("original,anonymized,ip_version,packets")


def test_missing_key_file_says_how_to_make_one(corpus_dir: Path, tmp_path: Path) -> None:
    completed = pktmask(
        "run",
        str(corpus_dir / "zeek_gre-sample.pcap"),
        "-o",
        str(tmp_path / "o.pcap"),
        "--key-file",
        str(tmp_path / "none.key"),
    )

    assert completed.returncode == 1
    assert "none.key not found" in completed.stderr
    assert "--save-key" in completed.stderr


def test_folder_output_named_like_a_file_rejected(corpus_dir: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(corpus_dir / "zeek_ssh-dups.pcap", inputs)

    completed = pktmask("run", str(inputs), "-o", str(tmp_path / "out.pcap"))

    assert completed.returncode == 1
    assert "give a folder name" in completed.stderr
    assert not (tmp_path / "out.pcap").exists()
