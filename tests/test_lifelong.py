"""The life-long memory on real Omniglot files and the committed ProtoNets checkpoint: what is
added is recalled, the write rule is Kaiser et al.'s, forgotten images leave no byte on disk,
damaged folders, unreadable images and other models are refused with the folder unchanged, and
a writer killed at any moment leaves a memory that opens whole."""

from __future__ import annotations

import csv
import json
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fewshot_mann.errors import MemoryStoreError, PredictError
from fewshot_mann.lifelong import memory as memory_module
from fewshot_mann.lifelong.memory import LifelongMemory
from fewshot_mann.lifelong.store import Store
from fewshot_mann.zoo import sha256

REPO = Path(__file__).resolve().parents[1]

CHECKPOINT = REPO / "results/compare-runs/protonet-1shot-trainval/model.pt"  # protonet-cnn
OTHER_PROTONET = REPO / "results/compare-runs/protonet-1shot/model.pt"
MANN = REPO / "results/santoro-5way/model.pt"


@pytest.fixture(scope="module")
def characters(data_root) -> list[Path]:
    """The first character of 8 evaluation alphabets, each a folder of its 20 PNG files."""
    root = data_root / "omniglot-py" / "images_evaluation"
    return [sorted(alphabet.iterdir())[0] for alphabet in sorted(root.iterdir())[:8]]


def class_folders(characters: list[Path], out: Path, images: slice) -> Path:
    """out/<alphabet>/<images of its character>: a support folder (copies of the files)."""
    for char in characters:
        folder = out / char.parent.name
        folder.mkdir(parents=True)
        for png in sorted(char.glob("*.png"))[images]:
            shutil.copy(png, folder / png.name)
    return out


def files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.png"))


def on_disk(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def new_memory(folder: Path, **settings) -> LifelongMemory:
    return LifelongMemory.create(folder, checkpoint=CHECKPOINT, device="cpu", progress=False,
                                 **settings)


def test_added_classes_are_recalled_and_outlive_the_process(characters, tmp_path):
    support = class_folders(characters, tmp_path / "support", slice(0, 3))
    queries = files_of(class_folders(characters, tmp_path / "queries", slice(10, 13)))
    memory = new_memory(tmp_path / "mem")
    added = memory.add(support, tag="first")
    assert (added.images, added.new_classes) == (24, 8)
    assert added.merged + added.new_entries == 24 and added.replaced == 0

    answers = memory.query(queries, top_k=5)
    truth = [q.parent.name for q in queries]
    accuracy = np.mean([a.prediction == t for a, t in zip(answers, truth, strict=True)])
    assert accuracy >= 0.75  # chance: 1/8
    for a in answers:
        classes, sims = zip(*a.top, strict=True)
        assert len(set(classes)) == 5 and list(sims) == sorted(sims, reverse=True)
        assert a.prediction == classes[0] and a.similarity == sims[0] <= 1.0 + 1e-6

    stats = memory.stats()
    assert (stats["classes"], stats["images"], stats["model"]) == (8, 24, "protonet-cnn")
    assert stats["entries"] == added.new_entries and stats["index"] == "exact"
    files = on_disk(memory.folder)
    memory.query(queries[:2])  # a reader does not write
    assert on_disk(memory.folder) == files

    reopened = LifelongMemory.open(memory.folder, device="cpu", progress=False)  # by zoo name
    assert [a.prediction for a in reopened.query(queries)] == [a.prediction for a in answers]
    reopened.query(queries[:1], touch=True)  # the age reset on read, when asked
    assert Store(memory.folder).generation() == stats["generation"] + 1

    more = class_folders(characters[:2], tmp_path / "more", slice(3, 5))
    listing = tmp_path / "more.csv"
    listing.write_text("path,label\n" + "".join(f"{p.relative_to(tmp_path)},{p.parent.name}\n"
                                                for p in files_of(more)))
    added = memory.add(f"csv:{listing}", tag="second")  # the first memory object catches up
    assert (added.images, added.new_classes) == (4, 0)
    assert memory.stats()["images"] == 28 and memory.stats()["classes"] == 8


def test_views_average_distorted_copies_into_a_key_that_depends_on_its_image_alone(
        characters, tmp_path):
    """A memory created with views keeps them: its keys and queries are the normalised sum
    of V+1 embeddings, the same for an image whatever batch it comes in; the zoo's threshold,
    calibrated without views, is not taken for it."""
    from fewshot_mann.lifelong.keyspace import KeySpace

    pngs = sorted(characters[0].glob("*.png"))[:6]
    plain = KeySpace.load(CHECKPOINT, device="cpu")
    viewed = KeySpace.load(CHECKPOINT, device="cpu", views=3)
    keys = viewed.keys(pngs, progress=False)
    assert np.allclose(np.linalg.norm(keys, axis=1), 1, atol=1e-5)
    assert np.allclose(viewed.keys(pngs[3:], progress=False), keys[3:], atol=1e-6)
    single = plain.keys(pngs, progress=False)
    assert not np.allclose(keys, single, atol=1e-3)
    assert (np.sum(keys * single, axis=1) > 0.9).all()  # small distortions: close keys

    memory = LifelongMemory.create(tmp_path / "mem", CHECKPOINT, views=3, device="cpu",
                                   progress=False)
    assert memory.settings.views == 3 and memory.settings.threshold is None
    memory.add(class_folders(characters, tmp_path / "support", slice(0, 2)))
    reopened = LifelongMemory.open(memory.folder, device="cpu", progress=False)
    assert reopened.keyspace.views == 3 and reopened.stats()["views"] == 3
    answer = reopened.query(pngs[5])[0]
    assert answer.prediction == characters[0].parent.name
    sims, _ = reopened.index.search(keys[5:6], 1)  # the query's key has the views too
    assert answer.similarity == pytest.approx(float(sims[0, 0]), abs=1e-5)


def test_a_query_below_the_threshold_is_unknown(characters, tmp_path):
    support = class_folders(characters[:4], tmp_path / "support", slice(0, 2))
    memory = new_memory(tmp_path / "mem", merge=False, threshold=0.999)
    memory.add(support)
    stored, other = files_of(support)[0], sorted(characters[0].glob("*.png"))[15]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.warns(UserWarning, match="could not be read"):
        seen, unseen, unreadable = memory.query([stored, other, broken])
    assert seen.prediction == stored.parent.name and seen.similarity > 0.999
    assert unseen.prediction == "unknown" and unseen.top[0][1] < 0.999
    assert unreadable.skipped and unreadable.prediction == ""


def reference_rule(keys, labels, capacity):
    """Kaiser et al.'s update written plainly: every key compared with every entry."""
    sums, counts, labs, last, members = [], [], [], [], []
    for t, (q, v) in enumerate(zip(keys, labels, strict=True), start=1):
        if sums:
            k = np.array(sums)
            n1 = int(np.argmax((k / np.linalg.norm(k, axis=1, keepdims=True)) @ q))
            if labs[n1] == v:
                sums[n1], counts[n1], last[n1] = sums[n1] + q, counts[n1] + 1, t
                members[n1].append(t - 1)
                continue
        row = len(sums) if capacity is None or len(sums) < capacity else int(np.argmin(last))
        if row == len(sums):
            sums.append(None), counts.append(0), labs.append(None), last.append(0)
            members.append(None)
        sums[row], counts[row], labs[row], last[row], members[row] = q, 1, v, t, [t - 1]
    return np.array(sums), counts, labs, last, members


def test_the_write_rule_is_kaisers_sequential_update(characters, tmp_path, monkeypatch):
    """Small batches and one index hit per key, so that keys meet entries that their own batch
    merged, created or replaced; the memory ends exactly as a plain sequential update does."""
    monkeypatch.setattr(memory_module, "BATCH", 5)
    monkeypatch.setattr(memory_module, "NEAREST", 1)
    memory = new_memory(tmp_path / "mem", capacity=4)
    first = class_folders(characters[:6], tmp_path / "a", slice(0, 3))
    second = class_folders(characters[2:], tmp_path / "b", slice(3, 5))
    paths = [str(p) for p in files_of(first) + files_of(second)]
    keys = memory.keyspace.keys(paths, progress=False)
    tallies = [memory.add(first), memory.add(second)]
    assert sum(t.merged for t in tallies) > 0 and sum(t.replaced for t in tallies) > 0

    sums, counts, labels, last, members = reference_rule(
        keys, [Path(p).parent.name for p in paths], capacity=4)
    c = memory.contents
    assert len(c) == 4
    np.testing.assert_allclose(c.sums, sums, atol=1e-6)
    assert c.counts.tolist() == counts and c.last_used.tolist() == last
    assert [c.classes[i] for i in c.labels] == labels
    assert [[m.path for m in ms] for ms in c.members] == [[paths[i] for i in ms]
                                                         for ms in members]
    assert memory.stats()["images"] == sum(counts) < len(paths)  # replaced members left


def test_a_key_whose_index_hit_its_own_batch_replaced_looks_further(monkeypatch):
    """Entries a (0 deg) and b (40 deg), full. q1 (class c, 90 deg) meets b, not its class, and
    replaces a, the older; q2 (class b, 5 deg) was nearest to a in the index searched before
    the batch, but a is now c at 90 deg: its nearest is b (35 deg away), and it merges there."""
    from fewshot_mann.lifelong.index import KeyIndex
    from fewshot_mann.lifelong.store import Contents, Member

    monkeypatch.setattr(memory_module, "NEAREST", 1)

    def unit(degrees: float) -> np.ndarray:
        return np.array([np.cos(np.radians(degrees)), np.sin(np.radians(degrees))], np.float32)

    c = Contents(np.stack([unit(0), unit(40)]), np.array([1, 1]), np.array([0, 1]),
                 np.array([1, 2]), ["a", "b"], [[Member("a", "")], [Member("b", "")]])
    index = KeyIndex.from_bytes(b"", c.keys(), "auto")
    c.classes.append("c")
    clock, tally = memory_module.remember(
        c, index, np.stack([unit(90), unit(5)]), np.array([2, 1]),
        [Member("q1", ""), Member("q2", "")], clock=2, merge=True, capacity=2)
    assert (clock, tally) == (4, {"merged": 1, "new_entries": 0, "replaced": 1})
    assert c.labels.tolist() == [2, 1] and c.counts.tolist() == [1, 2]
    assert [[m.path for m in ms] for ms in c.members] == [["q1"], ["b", "q2"]]
    np.testing.assert_allclose(index.search(unit(90)[None], 1)[0], [[1.0]], atol=1e-6)


def test_a_full_memory_replaces_the_entry_unused_longest(characters, tmp_path):
    support = class_folders(characters[:4], tmp_path / "support", slice(0, 1))
    memory = new_memory(tmp_path / "mem", capacity=3, merge=False)
    assert memory.add(support).replaced == 1
    evicted = files_of(support)[0]  # the first written: unused longest
    assert memory.classes() == [c.parent.name for c in characters[1:4]]
    assert str(evicted).encode() not in b"".join(on_disk(memory.folder).values())


def test_forgotten_images_leave_no_byte_on_disk(characters, tmp_path):
    keep = class_folders(characters[:3], tmp_path / "keep", slice(0, 2))
    drop = class_folders(characters[3:5], tmp_path / "drop", slice(0, 2))
    gone_class = class_folders(characters[5:6], tmp_path / "class", slice(0, 2))
    memory = new_memory(tmp_path / "mem", merge=False)  # an entry per image: its key is stored
    for folder, tag in ((keep, "kept"), (drop, "dropped"), (gone_class, None)):
        memory.add(folder, tag=tag)
    single = files_of(keep)[0]

    def traces(files: list[Path]) -> list[bytes]:
        """The stored keys of these images (float32 bytes), their paths and hashes."""
        c, paths = memory.contents, {str(f) for f in files}
        keys = [c.sums[i].tobytes() for i, ms in enumerate(c.members) if ms[0].path in paths]
        assert len(keys) == len(files)
        return keys + [str(f).encode() for f in files] + [sha256(f).encode() for f in files]

    def found(needles: list[bytes]) -> list[bytes]:
        stored = b"".join(p.read_bytes() for p in memory.folder.rglob("*") if p.is_file())
        return [n for n in needles if n in stored]

    for forget, files in (({"tag": "dropped"}, files_of(drop)),
                          ({"class_name": characters[5].parent.name}, files_of(gone_class)),
                          ({"image": single}, [single])):
        needles = traces(files)
        assert len(found(needles)) == len(needles)  # the search can find them
        gone = memory.forget(**forget)
        assert (gone.images, gone.entries, gone.reduced) == (len(files), len(files), 0)
        assert found(needles) == []
    assert found([b"dropped"]) == []
    assert memory.stats()["images"] == 5 and memory.stats()["classes"] == 3

    before = on_disk(memory.folder)
    for unknown in ({"class_name": "Klingon"}, {"tag": "dropped"}, {"image": single}):
        with pytest.raises(MemoryStoreError, match="holds no"):
            memory.forget(**unknown)
    assert on_disk(memory.folder) == before


def test_forgetting_a_merged_image_takes_its_key_out_of_the_sum(characters, tmp_path):
    support = class_folders(characters[:1], tmp_path / "support", slice(0, 3))
    first, second, third = files_of(support)
    memory = new_memory(tmp_path / "mem")
    assert memory.add(support).merged == 2  # one class: every later image meets its entry
    keys = memory.keyspace.keys([str(first), str(second), str(third)], progress=False)
    gone = memory.forget(image=second)
    assert (gone.images, gone.entries, gone.reduced) == (1, 0, 1)
    c = memory.contents
    assert c.counts.tolist() == [2] and [m.path for m in c.members[0]] == [str(first), str(third)]
    np.testing.assert_allclose(c.sums[0], keys[0] + keys[2], atol=1e-5)
    stored = b"".join(p.read_bytes() for p in memory.folder.iterdir() if p.is_file())
    assert str(second).encode() not in stored and sha256(second).encode() not in stored

    shutil.copy(sorted(characters[1].glob("*.png"))[0], third)  # other bytes under its name
    before = on_disk(memory.folder)
    with pytest.raises(MemoryStoreError, match="changed since it was added"):
        memory.forget(image=third)
    assert on_disk(memory.folder) == before


def test_another_model_is_refused(characters, tmp_path):
    memory = new_memory(tmp_path / "mem")
    with pytest.raises(MemoryStoreError) as refused:
        LifelongMemory.open(memory.folder, checkpoint=OTHER_PROTONET, device="cpu")
    message = str(refused.value)
    assert "\n" not in message
    assert sha256(CHECKPOINT)[:12] in message and sha256(OTHER_PROTONET)[:12] in message
    with pytest.raises(MemoryStoreError, match="holds a memory already"):
        new_memory(memory.folder)
    with pytest.raises(PredictError, match="is a mann model"):
        LifelongMemory.create(tmp_path / "mann", checkpoint=MANN, device="cpu")


def test_a_damaged_folder_is_refused_and_left_as_it_is(characters, tmp_path, capsys):
    from fewshot_mann.cli import main

    support = class_folders(characters[:2], tmp_path / "support", slice(0, 2))
    memory = new_memory(tmp_path / "mem")
    memory.add(support)
    folder = memory.folder
    arrays = next(folder.glob("arrays-*"))
    data = bytearray(arrays.read_bytes())
    data[-3] ^= 0x01  # one flipped bit in the sums
    arrays.write_bytes(bytes(data))
    before = on_disk(folder)
    with pytest.raises(MemoryStoreError, match=f"{arrays.name} has sha256"):
        LifelongMemory.open(folder, device="cpu")
    assert main(["memory", "add", str(folder), "--support", str(support), "--device",
                 "cpu", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "damaged" in error
    assert on_disk(folder) == before

    arrays.write_bytes(bytes(data[:-3]) + bytes([data[-3] ^ 0x01]) + bytes(data[-2:]))
    Store(folder).read()  # whole again
    next(folder.glob("meta-*")).unlink()
    with pytest.raises(MemoryStoreError, match=r"meta-.* is missing"):
        Store(folder).read()
    (folder / "manifest.json").write_text("{")
    with pytest.raises(MemoryStoreError, match=r"manifest\.json is damaged"):
        Store(folder).read()


def test_an_unreadable_image_adds_nothing(characters, tmp_path):
    support = class_folders(characters[:2], tmp_path / "support", slice(0, 2))
    memory = new_memory(tmp_path / "mem")
    memory.add(support)
    more = class_folders(characters[2:4], tmp_path / "more", slice(0, 2))
    broken = more / characters[3].parent.name / "broken.png"
    broken.write_bytes(b"\x89PNG but no image")
    before = on_disk(memory.folder)
    with pytest.raises(PredictError, match=r"broken\.png cannot be read.*nothing was added"):
        memory.add(more)
    assert on_disk(memory.folder) == before and memory.stats()["images"] == 4


def test_the_command_line_creates_adds_queries_and_forgets(characters, tmp_path, capsys):
    from fewshot_mann.cli import main

    support = class_folders(characters[:3], tmp_path / "support", slice(0, 2))
    queries = class_folders(characters[:3], tmp_path / "queries", slice(10, 11))
    folder, out = str(tmp_path / "mem"), tmp_path / "answers.csv"
    assert main(["memory", "create", folder, "--checkpoint", str(CHECKPOINT), "--threshold",
                 "0.5", "--device", "cpu"]) == 0
    assert main(["memory", "add", folder, "--support", str(support), "--tag", "t", "--device",
                 "cpu", "--quiet"]) == 0
    assert main(["memory", "query", folder, "--query", str(queries), "--out", str(out),
                 "--top-k", "2", "--device", "cpu", "--quiet"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["query"] for r in rows] == [str(p) for p in files_of(queries)]
    assert list(rows[0])[:5] == ["query", "predicted", "similarity", "top1_class",
                                 "top1_similarity"]
    assert main(["predict", "--memory", folder, "--query", str(queries), "--out",
                 str(tmp_path / "p.json"), "--device", "cpu", "--quiet"]) == 0
    answered = json.loads((tmp_path / "p.json").read_text())
    assert answered["threshold"] == 0.5 and len(answered["predictions"]) == 3
    assert main(["memory", "forget", folder, "--tag", "t", "--device", "cpu", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["memory", "stats", folder, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 0


# A writer process that forks adders and kills each at a random moment (after its imports, so
# that the kill falls within adds: embedding, writing a generation, replacing the manifest,
# deleting the old one). Forking from a process that has run no parallel torch code is safe.
KILLER = r"""
import os, random, signal, sys, time
import torch
torch.set_num_threads(1)
from fewshot_mann.lifelong.memory import LifelongMemory
folder, support, checkpoint, rounds = sys.argv[1:5]
rng = random.Random(0)
memory = LifelongMemory.open(folder, checkpoint=checkpoint, device="cpu", progress=False)
print("ready", flush=True)
for r in range(int(rounds)):
    sys.stdin.readline()
    pid = os.fork()
    if pid == 0:
        try:
            for k in range(10_000):
                memory.add(support, tag=f"{r}-{k}")
        finally:
            os._exit(0)
    time.sleep(rng.uniform(0.05, 0.5))
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    print(r, flush=True)
"""


@pytest.mark.train
def test_a_writer_killed_at_any_moment_leaves_a_whole_memory(characters, tmp_path):
    support = class_folders(characters[:4], tmp_path / "support", slice(0, 2))
    per_add = 8
    memory = new_memory(tmp_path / "mem")
    folder = memory.folder

    def whole_adds() -> int:
        """The adds the memory holds, each with all of its images."""
        c = Store(folder).read().contents
        tags = Counter(m.tag for ms in c.members for m in ms)
        assert set(tags.values()) <= {per_add} and c.images() == per_add * len(tags)
        return len(tags)

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rounds, held, reads, raced = 4, 0, 0, 0
    killer = subprocess.Popen([sys.executable, "-c", KILLER, str(folder), str(support),
                               str(CHECKPOINT), str(rounds)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    watchdog = threading.Timer(120, killer.kill)
    watchdog.start()
    try:
        assert killer.stdout.readline() == "ready\n"
        for _ in range(rounds):
            killer.stdin.write("\n")
            killer.stdin.flush()
            while not select.select([killer.stdout], [], [], 0)[0]:  # read while it writes
                try:
                    whole_adds()
                    reads += 1
                except MemoryStoreError as err:  # two generations came while one was read
                    assert "rewritten twice" in str(err)
                    raced += 1
                time.sleep(0.002)
            assert killer.stdout.readline(), "the writer process died"
            now = whole_adds()
            assert now >= held
            held = now
        assert killer.wait(timeout=60) == 0
    finally:
        watchdog.cancel()
        killer.kill()
    assert held > 0 and reads > raced
    reopened = LifelongMemory.open(folder, device="cpu", progress=False)
    reopened.add(support, tag="last")
    assert whole_adds() == held + 1
    left = {p.name for p in folder.iterdir()}
    named = {f["name"] for f in json.loads((folder / "manifest.json").read_text())["files"]
             .values()}
    assert left == {"manifest.json", ".lock"} | named  # what killed writers left is gone
