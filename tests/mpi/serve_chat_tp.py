#!/usr/bin/env python3
"""ctest mpi_tp_serve_chat: `lutq serve` and `lutq chat` over 2 MPI ranks answer as one process.

Usage: serve_chat_tp.py MPIEXEC LUTQ LUTQ_MPI_TESTS

On a tiny synthetic model (lutq_mpi_tests --write-tiny), with greedy sampling and exact LUT
precision:
  serve: two concurrent /v1/completions requests (a batched decode step) give the same text from
         `mpirun -np 2 lutq serve` as from one process; SIGTERM to rank 0 stops every rank (exit 0);
         --kv-budget gives the slots of the rank holding the most KV heads (3 over 2 ranks: 2).
  chat:  two lines on stdin give the same replies from 2 ranks as from one process.
  failure: a follower killed with SIGKILL ends the job (mpirun exits non-zero), no hang.
Every process runs in its own session and is killed (its process group) on timeout or exit.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

START_S = 90  # model load and MPI start-up on a loaded 2-core machine
REQUEST_S = 60
STOP_S = 30
PROMPTS = ["hello there", "the quick brown fox"]
COMMON = ["--precision", "exact", "-t", "1"]
# The KV budget per rank: an f32 slot of 64 positions holds 2 layers x (K + V) x 16 x 64 x 4 B =
# 16 KiB per KV head. One process (3 KV heads): 1 MiB / 48 KiB = 21 slots. Two ranks hold 1 + 2
# heads: the budget must fit the rank with 2, 32 slots (not rank 0's 64).
BUDGET_MIB = "1"
BUDGET = ["--kv-budget", BUDGET_MIB, "--ctx", "64"]
BUDGET_SLOTS = (21, 32)


class Job:
    """A started command whose stderr is read in the background (for the 'serving' line)."""

    def __init__(self, argv, stdin_text=None):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                     text=True, errors="replace")
        self.err = []
        self.out = []
        self.port = None
        self.ready = threading.Event()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.err, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.out, False), daemon=True).start()
        if stdin_text is not None:
            self.proc.stdin.write(stdin_text)
            self.proc.stdin.close()

    def _read(self, stream, lines, look_for_port):
        for line in stream:
            lines.append(line)
            m = re.search(r"serving .* on http://[^:]+:(\d+)", line) if look_for_port else None
            if m:
                self.port = int(m.group(1))
                self.ready.set()

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def log(self):
        return "".join(self.err)


def fail(what, job=None):
    print("FAIL " + what)
    if job is not None:
        print(job.log())
    sys.exit(1)


def complete(port, prompt):
    body = json.dumps({"prompt": prompt, "max_tokens": 12, "temperature": 0}).encode()
    req = urllib.request.Request("http://127.0.0.1:%d/v1/completions" % port, data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=REQUEST_S) as r:
        return json.load(r)["choices"][0]["text"]


def concurrent_completions(port):
    texts = [None] * len(PROMPTS)
    errors = []

    def one(i):
        try:
            texts[i] = complete(port, PROMPTS[i])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append("%s: %s" % (PROMPTS[i], e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(PROMPTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return texts, errors


def rank_pids(mpirun_pid):
    """{rank: pid} of the lutq processes below mpirun (from OMPI_COMM_WORLD_RANK in their environment)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != mpirun_pid:
                continue
            with open("/proc/%s/environ" % entry, "rb") as f:
                env = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
            if b"OMPI_COMM_WORLD_RANK" in env:
                out[int(env[b"OMPI_COMM_WORLD_RANK"])] = int(entry)
        except (OSError, ValueError, IndexError):
            continue
    return out


def start_server(argv):
    job = Job(argv)
    if not job.ready.wait(START_S):
        job.kill()
        fail("no 'serving' line within %d s: %s" % (START_S, " ".join(argv)), job)
    return job


def serve_texts(argv, name):
    job = start_server(argv)
    try:
        texts, errors = concurrent_completions(job.port)
        if errors:
            fail("%s: requests failed: %s" % (name, "; ".join(errors)), job)
        return job, texts
    except BaseException:
        job.kill()
        raise


def check_slots(job, name, want):
    m = re.search(r"serving .*\((\d+) slots x", job.log())
    if not m or int(m.group(1)) != want:
        fail("%s: --kv-budget %s MiB should give %d slots" % (name, BUDGET_MIB, want), job)


def check_serve(mpirun, lutq, model):
    one, want = serve_texts([lutq, "serve", model, "--port", "0", "--quiet"] + COMMON + BUDGET, "1 process")
    check_slots(one, "1 process", BUDGET_SLOTS[0])
    one.proc.send_signal(signal.SIGTERM)
    if one.wait(STOP_S) != 0:
        one.kill()
        fail("1 process: SIGTERM did not stop the server with exit 0", one)
    two, got = serve_texts(mpirun + ["-np", "2", lutq, "serve", model, "--port", "0", "--quiet"] + COMMON + BUDGET,
                           "2 ranks")
    try:
        check_slots(two, "2 ranks", BUDGET_SLOTS[1])
        if got != want:
            fail("2 ranks answered %r, 1 process %r" % (got, want), two)
        ranks = rank_pids(two.proc.pid)
        if 0 not in ranks:
            fail("cannot find rank 0's process below mpirun (found %r)" % ranks, two)
        os.kill(ranks[0], signal.SIGTERM)
        rc = two.wait(STOP_S)
        if rc != 0:
            fail("2 ranks: SIGTERM to rank 0 gave exit %r within %d s (None: still running)" % (rc, STOP_S), two)
        if two.log().count("lutq: serving") != 1:
            fail("2 ranks: the startup line is not printed exactly once", two)
    finally:
        two.kill()
    print("ok   serve: 2 ranks == 1 process: %r; SIGTERM to rank 0 stopped both ranks" % (got,))


def check_follower_death(mpirun, lutq, model):
    job = start_server(mpirun + ["-np", "2", lutq, "serve", model, "--port", "0", "--quiet"] + COMMON)
    try:
        ranks = rank_pids(job.proc.pid)
        if 1 not in ranks:
            fail("cannot find rank 1's process below mpirun (found %r)" % ranks, job)
        os.kill(ranks[1], signal.SIGKILL)
        try:
            complete(job.port, PROMPTS[0])  # may fail or never be answered; the job must end anyway
        except Exception:  # noqa: BLE001 - any failure of the request is fine here
            pass
        rc = job.wait(STOP_S)
        if rc is None:
            fail("rank 1 killed: mpirun still running after %d s (a rank hangs)" % STOP_S, job)
        if rc == 0:
            fail("rank 1 killed: mpirun exited 0", job)
    finally:
        job.kill()
    print("ok   follower killed: the job ended with exit %d" % rc)


def chat_replies(argv):
    job = Job(argv, stdin_text="hello\nhow are you\n")
    rc = job.wait(START_S + 2 * REQUEST_S)
    if rc is None:
        job.kill()
        fail("chat still running: " + " ".join(argv), job)
    time.sleep(0.1)  # the readers drain the pipes
    if rc != 0:
        fail("chat exit %d: %s" % (rc, " ".join(argv)), job)
    return "".join(job.out)


def check_chat(mpirun, lutq, model):
    args = ["chat", model, "--temp", "0", "-n", "10"] + COMMON
    want = chat_replies([lutq] + args)
    got = chat_replies(mpirun + ["-np", "2", lutq] + args)
    if got != want or not want:
        fail("chat: 2 ranks printed %r, 1 process %r" % (got, want))
    print("ok   chat: 2 ranks == 1 process: %r" % (got,))


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    mpiexec, lutq, tests = sys.argv[1:]
    mpirun = [mpiexec, "--allow-run-as-root", "--oversubscribe", "--mca", "pml", "ob1", "--mca", "btl",
              "self,vader,tcp", "--mca", "btl_vader_single_copy_mechanism", "none"]
    with tempfile.TemporaryDirectory() as d:
        model = os.path.join(d, "tiny.gguf")
        if subprocess.run([tests, "--write-tiny", model, "7"], timeout=60).returncode != 0:
            fail("cannot write the tiny model")
        check_serve(mpirun, lutq, model)
        check_chat(mpirun, lutq, model)
        check_follower_death(mpirun, lutq, model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
