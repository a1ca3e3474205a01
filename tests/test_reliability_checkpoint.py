"""Checkpoint integrity: CRC and SHA-256 verification, legacy files, stale temp files (issue 17)."""

from __future__ import annotations

import zipfile

import pytest
import torch

from darlkit.training import CHECKPOINT_FORMAT, checkpoint_digest, load_checkpoint, save_checkpoint
from darlkit.training.checkpoint import CHECKSUM_ALGORITHM, remove_stale_temp_files


def _ckpt() -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "step": 7,
        "model": {"w": torch.arange(1000, dtype=torch.float32), "b": torch.tensor(2.5, dtype=torch.bfloat16)},
        "config": {"lr": 2e-4, "mults": [1, 2]},
    }


def _flip_byte_in_tensor(path, record_suffix="data/0", at=2000):
    """Flip one byte inside a tensor's stored bytes (the zip entry is stored uncompressed)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith(record_suffix))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + at] ^= 0xFF
    path.write_bytes(bytes(data))


def test_saved_checkpoint_carries_a_digest_of_its_content(tmp_path):
    obj = _ckpt()
    path = save_checkpoint(obj, tmp_path / "last.pt")
    raw = torch.load(path, weights_only=True)
    assert raw["checksum"] == {"algorithm": CHECKSUM_ALGORITHM, "sha256": checkpoint_digest(obj)}
    assert "checksum" not in obj  # the caller's dict is not modified
    got = load_checkpoint(path)
    assert "checksum" not in got and got["step"] == 7
    assert torch.equal(got["model"]["w"], obj["model"]["w"])


def test_digest_depends_on_every_tensor_byte_and_value():
    base = checkpoint_digest(_ckpt())
    assert base == checkpoint_digest(_ckpt())  # deterministic
    changed = _ckpt()
    changed["model"]["w"][999] = 1e-7
    assert checkpoint_digest(changed) != base
    as_tuple = _ckpt()
    as_tuple["config"]["mults"] = (1, 2)  # a tuple read back as a list keeps the digest
    assert checkpoint_digest(as_tuple) == base
    other_dtype = _ckpt()
    other_dtype["model"]["w"] = other_dtype["model"]["w"].view(torch.int32)  # same bytes, other dtype
    assert checkpoint_digest(other_dtype) != base
    step = _ckpt()
    step["step"] = 8
    assert checkpoint_digest(step) != base


def test_flipped_tensor_byte_is_refused_naming_the_file(tmp_path):
    path = save_checkpoint(_ckpt(), tmp_path / "last.pt")
    _flip_byte_in_tensor(path)
    with pytest.raises(ValueError, match="is corrupted: its record .*data/0.* fails the zip CRC check") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_content_not_matching_the_digest_is_refused(tmp_path):
    """A file re-saved with valid CRCs but altered tensors fails the SHA-256 check."""
    path = save_checkpoint(_ckpt(), tmp_path / "best.pt")
    raw = torch.load(path, weights_only=True)
    raw["model"]["w"][10] += 1.0
    torch.save(raw, path)
    with pytest.raises(ValueError, match="does not match its SHA-256 checksum") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_checkpoint_without_a_digest_still_loads(tmp_path):
    """Files written before the digest existed (plain torch.save of the dict) load unchanged."""
    path = tmp_path / "old.pt"
    torch.save(_ckpt(), path)
    got = load_checkpoint(path)
    assert got["step"] == 7 and torch.equal(got["model"]["w"], torch.arange(1000, dtype=torch.float32))
    _flip_byte_in_tensor(path)  # ... and are still verified by their zip CRCs
    with pytest.raises(ValueError, match="zip CRC"):
        load_checkpoint(path)


def test_empty_and_truncated_files_are_named(tmp_path):
    empty = tmp_path / "last.pt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"last.pt is not a readable PyTorch file \(an empty file\)"):
        load_checkpoint(empty)
    good = save_checkpoint(_ckpt(), tmp_path / "good.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(ValueError, match="cut.pt"):
        load_checkpoint(cut)


def test_stale_temp_files_of_killed_saves_are_removed_by_the_next_save(tmp_path):
    stale = [tmp_path / ".last.pt.k1llxd.tmp", tmp_path / ".last.pt.zz.tmp"]
    for p in stale:
        p.write_bytes(b"")  # what a save killed before its first write leaves
    keep = [tmp_path / ".best.pt.abc.tmp", tmp_path / "notes.tmp", tmp_path / "last.pt.tmp"]
    for p in keep:
        p.write_text("x")
    save_checkpoint(_ckpt(), tmp_path / "last.pt")
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)  # other files (and other checkpoints' temps) untouched
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 7
    (tmp_path / ".best.pt.abc.tmp").write_bytes(b"")
    assert remove_stale_temp_files(tmp_path / "best.pt") == [tmp_path / ".best.pt.abc.tmp"]
    assert remove_stale_temp_files(tmp_path / "missing" / "last.pt") == []


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_released_weights_refusal_names_the_object_without_the_unsafe_hint(tmp_path):
    from darlkit.model import load_released_checkpoint

    torch.save({"w": torch.zeros(1), "x": _Evil()}, tmp_path / "darl_G.pth")
    with pytest.raises(ValueError, match=r"darl_G.pth was refused by the safe loader: .*\((posix|nt)\.system\)") as info:
        load_released_checkpoint(str(tmp_path / "darl"))
    assert "weights_only" not in str(info.value).replace(str(tmp_path), "")


def test_a_save_killed_midway_leaves_last_pt_intact_and_the_next_save_cleans_up(tmp_path):
    """SIGKILL during the write of last.pt: the old file survives; the temp file goes on the next save."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    path = save_checkpoint(_ckpt(), tmp_path / "last.pt")
    before = path.read_bytes()
    script = (
        "import sys, time, torch\n"
        "from darlkit.training import checkpoint as c\n"
        "def slow(obj, fh, *a, **k):\n"
        "    fh.write(b'PK partial'); fh.flush(); print('writing', flush=True); time.sleep(60)\n"
        "c.torch.save = slow\n"
        f"c.save_checkpoint({{'format': c.CHECKPOINT_FORMAT, 'step': 9}}, {str(path)!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stale = list(tmp_path.glob(".last.pt.*.tmp"))
    assert len(stale) == 1 and path.read_bytes() == before  # old checkpoint intact, never 0 bytes
    assert load_checkpoint(path)["step"] == 7
    save_checkpoint(_ckpt(), path)
    assert not list(tmp_path.glob(".last.pt.*.tmp"))
