#!/usr/bin/env python3
"""Kill -9 drill: backups killed at random moments, then checked as a hostile tester would.

    python3 scripts/kill-drill.py [local|glacier] [-n ITERATIONS] [--seed S] [--aim WINDOW]

Each iteration changes the source (a region of a large file, a file inside a directory), starts
a backup, kills it with SIGKILL at a random moment within the length of a whole run (or, with
--aim, at the moment a known crash window opens), runs the backup again to completion, then
checks:

  rerun     the run after the kill exits 0;
  ledger    every ledger row names an archive the destination holds with the recorded size and
            tree hash (local: `verify --remote`; Glacier: a fresh inventory of the fake), and the
            sources match their last upload (`verify`);
  partial   nothing is left half-done: no `.incoming/*.partial` file (local), no open multipart
            upload (Glacier);
  duplicate the destination holds exactly one archive per ledger row;
  bytes     `restore` brings back every byte of both candidates.

--aim picks the moment instead of chance:
  random     (the default) anywhere within a whole run;
  naming     local, with 300 small files besides: as soon as the first archive of a batch gets
             its final name, before the ledger records the batch (the next run must remove the
             archives it named, so "duplicate" holds);
  completing glacier, compressed: as soon as the vault holds the new archive, before the run
             records it (the next run must complete again and record that archive, whatever
             this run's compressed bytes);
  restore    local: a restore killed at a random moment into a directory, then one with
             --force into the same directory: no temporary file of the killed one may remain;
  migrating  glacier: `migrate` of six one-part archives into a new moto S3 bucket, killed as
             soon as the bucket holds the N-th object (N at random): the rerun must make no
             second object and no second row (needs moto_server in .venv, as scripts/test
             sets up).

Glacier runs against the in-repo fake on 127.0.0.1 (1 MiB parts, one at a time, so kills land
mid-upload). Work goes under target/drill. Prints one line per iteration and a summary; exits 1
if any check failed.
"""

import argparse
import filecmp
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "drill"
BIN = ROOT / "target" / "release" / "glacier-backup"
FAKE = ROOT / "target" / "release" / "fake-glacier"
MIB = 1 << 20
ENV = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
           AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE="/nonexistent",
           AWS_SHARED_CREDENTIALS_FILE="/nonexistent", RUST_LOG="")


def build():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "glacier-backup"],
                   cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "fake-glacier"],
                   cwd=ROOT, check=True)


def run(config, *args, timeout=600):
    return subprocess.run([str(BIN), "-c", str(config), *args], env=ENV, capture_output=True,
                          text=True, timeout=timeout)


class Local:
    name = "local"

    def __init__(self, work):
        self.archives = work / "archives"

    def section(self):
        return f'[local]\ndirectory = "{self.archives}"\ncreate_directory = true\n'

    def main(self):
        return 'backend = "local"\n'

    def leftovers(self):
        incoming = self.archives / ".incoming"
        return sorted(p.name for p in incoming.glob("*.partial")) if incoming.exists() else []

    def archive_count(self):
        return sum(1 for p in self.archives.rglob("*")
                   if p.is_file() and ".incoming" not in p.parts)

    def ledger_holds(self, config, rows):
        """Every row's archive, with its size and tree hash (re-computed from the disk)."""
        return run(config, "verify", "--remote").returncode == 0

    def stop(self):
        pass


class Glacier:
    name = "glacier"

    def __init__(self, work):
        self.fake = subprocess.Popen([str(FAKE), "drill", "--keep-data", "--unsigned"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        self.endpoint = self.fake.stdout.readline().strip()
        assert self.endpoint.startswith("http://127.0.0.1:"), self.endpoint

    def section(self):
        return (f'[glacier]\nregion = "us-east-1"\nendpoint_url = "{self.endpoint}"\n'
                'part_size = 1\nconcurrency = 1\n')

    def main(self):
        return 'vault_name = "drill"\n'

    def get(self, path):
        with urllib.request.urlopen(f"{self.endpoint}/-/vaults/drill{path}") as reply:
            return json.load(reply)

    def leftovers(self):
        return [u["MultipartUploadId"] for u in self.get("/multipart-uploads")["UploadsList"]]

    def archive_count(self):
        return self.get("")["NumberOfArchives"]

    def ledger_holds(self, config, rows):
        """Every row's archive, with its size and tree hash, per a fresh inventory of the fake
        (its jobs finish at once; `verify --remote` would use the last inventory fetched)."""
        request = urllib.request.Request(f"{self.endpoint}/-/vaults/drill/jobs", method="POST",
                                         data=b'{"Type": "inventory-retrieval"}')
        with urllib.request.urlopen(request) as reply:
            job = reply.headers["x-amz-job-id"]
        held = {a["ArchiveId"]: (a["Size"], a["SHA256TreeHash"])
                for a in self.get(f"/jobs/{job}/output")["ArchiveList"]}
        return all(held.get(archive_id) == (size, tree_hash)
                   for archive_id, size, tree_hash in rows)

    def stop(self):
        self.fake.stdin.close()
        self.fake.wait()


SMALL_FILES = 300


def mutate(data, rng, step):
    big = data / "big.bin"
    with open(big, "r+b") as f:
        f.seek(rng.randrange(0, big.stat().st_size - MIB))
        f.write(rng.randbytes(MIB))
    (data / "dir" / "notes.txt").write_text(f"step {step}\n")
    for small in sorted(data.glob("small-*")):
        small.write_text(f"{small.name} at step {step}\n")


def kill_when(proc, opened, after=0.0, timeout=120):
    """SIGKILLs `proc` `after` seconds once `opened()` holds; False if it ended (or timed out)
    first."""
    deadline = time.perf_counter() + timeout
    while proc.poll() is None and time.perf_counter() < deadline:
        if opened():
            time.sleep(after)
            if proc.poll() is not None:
                return False
            proc.send_signal(signal.SIGKILL)
            return True
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    return False


def noted(ledger):
    """Whether the ledger notes archive names a batch is getting (and not yet recorded)."""
    try:
        with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=0) as db:
            return db.execute("SELECT count(*) FROM naming").fetchone()[0] > 0
    except sqlite3.Error:
        return False


def stray_temporaries(tree):
    return sorted(str(p) for p in tree.rglob(".glacier-backup-restore-*"))


def ledger_rows(ledger):
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
        return db.execute("SELECT archive_id, size, tree_hash FROM uploads").fetchall()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("backend", nargs="?", default="local", choices=["local", "glacier"])
    parser.add_argument("-n", "--iterations", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--size-mib", type=int, default=48)
    parser.add_argument("--aim", default="random",
                        choices=["random", "naming", "completing", "restore", "migrating"])
    args = parser.parse_args()
    needs = {"naming": "local", "completing": "glacier", "restore": "local",
             "migrating": "glacier"}
    if needs.get(args.aim, args.backend) != args.backend:
        sys.exit(f"--aim {args.aim} is a window of the {needs[args.aim]} backend")
    rng = random.Random(args.seed)
    build()

    work = WORK / args.backend
    shutil.rmtree(work, ignore_errors=True)
    if args.aim == "migrating":
        sys.exit(migrate_drill(work, rng, args.iterations))
    data = work / "data"
    (data / "dir" / "sub").mkdir(parents=True)
    (data / "big.bin").write_bytes(rng.randbytes(args.size_mib * MIB))
    (data / "dir" / "sub" / "photo.raw").write_bytes(rng.randbytes(8 * MIB))
    if args.aim == "naming":
        for n in range(SMALL_FILES):
            (data / f"small-{n:03}").write_text(f"small {n}\n")
    backend = Local(work) if args.backend == "local" else Glacier(work)
    ledger = work / "ledger.sqlite3"
    config = work / "drill.toml"
    layers = '[archive]\ncompression = "zstd"\n\n' if args.aim == "completing" else ""
    config.write_text(
        f'[main]\n{backend.main()}logfile = ""\nledger = "{ledger}"\n\n{backend.section()}\n'
        f'{layers}["{data}"]\nupload_files = true\nupload_dirs = true\nupload_if_changed = true\n')

    start = time.perf_counter()
    first = run(config)
    whole_run = time.perf_counter() - start
    if first.returncode != 0:
        sys.exit(f"the first backup failed:\n{first.stdout}{first.stderr}")

    if args.aim == "restore":
        sys.exit(restore_drill(config, data, work, rng, args.iterations))

    failures, landed = [], 0
    for step in range(1, args.iterations + 1):
        mutate(data, rng, step)
        delay = rng.uniform(0, whole_run * 0.9)
        before = backend.archive_count()
        proc = subprocess.Popen([str(BIN), "-c", str(config), "--quiet"], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if args.aim == "random":
            time.sleep(delay)
            alive = proc.poll() is None
            if alive:
                proc.send_signal(signal.SIGKILL)
        elif args.aim == "naming":
            # The window opens when the ledger notes the batch's names, just before they are
            # linked, and closes when the batch's rows are recorded.
            # The kill lands anywhere in it: before, during or after the links.
            delay = rng.uniform(0, 0.25)
            alive = kill_when(proc, lambda: noted(ledger), after=delay)
        else:
            # Open once the vault holds an archive the ledger does not.
            alive = kill_when(proc, lambda: backend.archive_count() > before)
            delay = 0.0
        landed += alive
        proc.wait()

        checks = {}
        rerun = run(config)
        checks["rerun"] = rerun.returncode == 0
        verify = run(config, "verify")
        rows = ledger_rows(ledger)
        checks["ledger"] = verify.returncode == 0 and backend.ledger_holds(config, rows)
        left = backend.leftovers()
        checks["partial"] = not left
        archives = backend.archive_count()
        checks["duplicate"] = len(rows) == archives
        restored = work / f"restored-{step}"
        back = run(config, "restore", "--wait", "--to", str(restored), str(data))
        checks["bytes"] = (
            back.returncode == 0
            and filecmp.cmp(data / "big.bin", restored / "big.bin", shallow=False)
            and not filecmp.dircmp(data / "dir", restored / "dir").diff_files
            and filecmp.cmp(data / "dir" / "sub" / "photo.raw",
                            restored / "dir" / "sub" / "photo.raw", shallow=False))
        shutil.rmtree(restored, ignore_errors=True)
        failed = [name for name, ok in checks.items() if not ok]
        state = "killed" if alive else "finished before the kill"
        # What the rerun found of the killed run: archives it removed, or completed again.
        for sign, said in (("removed", "an interrupted run stored without recording"),
                           ("completed again", "nothing is sent again")):
            if said in rerun.stderr:
                state += f" (rerun: {sign})"
        print(f"{step:3}: {state} at {delay:5.2f}s; ledger rows {len(rows)}, archives {archives}, "
              f"left open {len(left)}: {'ok' if not failed else 'FAILED ' + ', '.join(failed)}")
        if failed:
            failures.append((step, failed, rerun.stdout[-2000:] + verify.stdout[-2000:]))

    backend.stop()
    print(f"{args.backend}: {args.iterations} iterations, {landed} kills landed mid-run "
          f"(a whole run takes {whole_run:.2f}s), {len(failures)} with a failed check")
    for step, failed, output in failures:
        print(f"--- iteration {step}: {', '.join(failed)}\n{output}")
    sys.exit(1 if failures else 0)


class Moto:
    """moto_server from .venv on a port of 127.0.0.1 it picks itself."""

    def __init__(self):
        exe = ROOT / ".venv" / "bin" / "moto_server"
        if not exe.exists():
            sys.exit(f"{exe} not found: run scripts/test once, which installs moto into .venv")
        self.proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", "0"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for line in self.proc.stderr:
            if "Running on http://127.0.0.1:" in line:
                self.endpoint = "http://127.0.0.1:" + line.rsplit(":", 1)[1].strip().rstrip("/")
                break
        else:
            sys.exit("moto_server did not start")
        # Read on, so its request log never fills the pipe.
        import threading
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()

    def create_bucket(self, name):
        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint}/{name}", method="PUT"))

    def keys(self, bucket):
        import re
        with urllib.request.urlopen(f"{self.endpoint}/{bucket}?list-type=2") as reply:
            return re.findall(r"<Key>([^<]*)</Key>", reply.read().decode())

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def count_rows(ledger, sql):
    with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True) as db:
        return db.execute(sql).fetchone()[0]


def migrate_drill(work, rng, iterations, files=6):
    """Six one-part vault archives moved into a new bucket each iteration, the migration killed
    when the bucket holds the N-th object, then run again: one object and one row each."""
    vault = Glacier(work)
    moto = Moto()
    data = work / "data"
    data.mkdir(parents=True)
    for n in range(files):
        (data / f"file-{n}.bin").write_bytes(rng.randbytes(200_000))
    vault_config = work / "vault.toml"
    vault_config.write_text(
        f'[main]\n{vault.main()}logfile = ""\nledger = "{work / "vault.sqlite3"}"\n\n'
        f'{vault.section()}\n["{data}"]\nupload_files = true\n')
    first = run(vault_config)
    if first.returncode != 0:
        sys.exit(f"the backup to the vault failed:\n{first.stderr}")
    failures, landed = [], 0
    for step in range(1, iterations + 1):
        bucket = f"drill-{step}"
        moto.create_bucket(bucket)
        bucket_ledger = work / f"{bucket}.sqlite3"
        bucket_config = work / f"{bucket}.toml"
        bucket_config.write_text(
            f'[main]\nbackend = "s3"\nlogfile = ""\nledger = "{bucket_ledger}"\n\n'
            f'[s3]\nbucket = "{bucket}"\nstorage_class = "GLACIER_IR"\n'
            f'endpoint_url = "{moto.endpoint}"\nregion = "us-east-1"\nforce_path_style = true\n')
        nth = rng.randint(1, files)
        command = [str(BIN), "-c", str(vault_config), "--quiet", "migrate", "--to",
                   str(bucket_config), "--wait"]
        proc = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        alive = kill_when(proc, lambda: len(moto.keys(bucket)) >= nth)
        landed += alive
        proc.wait()
        rerun = run(vault_config, "migrate", "--to", str(bucket_config), "--wait")
        keys = moto.keys(bucket)
        rows = count_rows(bucket_ledger, "SELECT count(*) FROM uploads")
        moved = count_rows(work / "vault.sqlite3",
                           f"SELECT count(*) FROM moved WHERE destination = 's3.{bucket}'")
        checks = {
            "rerun": rerun.returncode == 0,
            "objects": len(keys) == files and not any(k.rsplit(".", 1)[-1].isdigit()
                                                     for k in keys),
            "rows": rows == files,
            "moved": moved == files,
        }
        failed = [name for name, ok in checks.items() if not ok]
        state = f"killed at object {nth}" if alive else "finished before the kill"
        print(f"{step:3}: migrate {state}; objects {len(keys)}, rows {rows}, moved {moved}: "
              f"{'ok' if not failed else 'FAILED ' + ', '.join(failed)}")
        if failed:
            failures.append((step, failed, rerun.stderr[-2000:]))
    vault.stop()
    moto.stop()
    print(f"migrating: {iterations} iterations, {landed} kills landed mid-run, "
          f"{len(failures)} with a failed check")
    for step, failed, output in failures:
        print(f"--- iteration {step}: {', '.join(failed)}\n{output}")
    return 1 if failures else 0


def restore_drill(config, data, work, rng, iterations):
    """Restores killed at random moments into one directory, each followed by a restore with
    --force into it: the tree must come back whole, with no temporary file of a killed run."""
    start = time.perf_counter()
    target = work / "restored"
    whole = run(config, "restore", "--to", str(target), str(data))
    whole_restore = time.perf_counter() - start
    if whole.returncode != 0:
        return f"the first restore failed:\n{whole.stdout}{whole.stderr}"
    failures, landed = [], 0
    for step in range(1, iterations + 1):
        shutil.rmtree(target, ignore_errors=True)
        delay = rng.uniform(0, whole_restore * 0.9)
        proc = subprocess.Popen([str(BIN), "-c", str(config), "--quiet", "restore", "--to",
                                 str(target), str(data)], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        alive = proc.poll() is None
        if alive:
            proc.send_signal(signal.SIGKILL)
            landed += 1
        proc.wait()
        again = run(config, "restore", "--force", "--to", str(target), str(data))
        left = stray_temporaries(target)
        same = (again.returncode == 0
                and filecmp.cmp(data / "big.bin", target / "big.bin", shallow=False)
                and filecmp.cmp(data / "dir" / "sub" / "photo.raw",
                                target / "dir" / "sub" / "photo.raw", shallow=False))
        ok = same and not left
        state = "killed" if alive else "finished before the kill"
        print(f"{step:3}: restore {state} at {delay:5.2f}s; temporaries left {len(left)}: "
              f"{'ok' if ok else 'FAILED'}")
        if not ok:
            failures.append((step, left, again.stderr[-2000:]))
    print(f"restore: {iterations} iterations, {landed} kills landed mid-restore "
          f"(a whole restore takes {whole_restore:.2f}s), {len(failures)} with a failed check")
    for step, left, output in failures:
        print(f"--- iteration {step}: left {left}\n{output}")
    return 1 if failures else 0


if __name__ == "__main__":
    main()
