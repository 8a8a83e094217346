#!/usr/bin/env python3
"""Two scale adapters served by one `lutq serve` (issue 14; docs/server.md, "Per-request scale
adapters"): starts the server with --adapters, sends the same completion prompt under each adapter
and without one, all at once (they share decode steps), and checks each text against
`lutq run --adapter FILE` (greedy) on the base file; prints the server's resident memory beside
that of a server without adapters. Standard library only.

    python3 scripts/serve_adapters.py LUTQ MODEL.lutq NAME=ADAPTER.gguf NAME=ADAPTER.gguf [--prompt TEXT]
"""
import argparse
import concurrent.futures
import json
import socket
import subprocess
import sys
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(lutq, model, adapters, port):
    cmd = [lutq, "serve", model, "--port", str(port), "--parallel", "4", "--ctx", "256", "--quiet"]
    if adapters:
        cmd += ["--adapters", ",".join(adapters)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                sys.exit("lutq serve exited: " + proc.stderr.read())
            time.sleep(0.5)
    proc.kill()
    sys.exit("lutq serve did not come up in 300 s")


def rss_mib(proc):
    with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def complete(port, prompt, n, adapter):
    body = {"prompt": prompt, "max_tokens": n, "temperature": 0}
    if adapter:
        body["adapter"] = adapter
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)["choices"][0]["text"]


def run_cli(lutq, model, adapter_file, prompt, n):
    cmd = [lutq, "run", model, "-p", prompt, "-n", str(n), "--temp", "0", "--raw"]
    if adapter_file:
        cmd += ["--adapter", adapter_file]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lutq")
    ap.add_argument("model")
    ap.add_argument("adapters", nargs="+", help="NAME=ADAPTER.gguf")
    ap.add_argument("--prompt", default="The state of the Union is")
    ap.add_argument("-n", type=int, default=24)
    a = ap.parse_args()
    files = dict(s.split("=", 1) for s in a.adapters)
    port = free_port()
    plain = start(a.lutq, a.model, [], port)
    plain_rss = rss_mib(plain)
    plain.terminate()
    plain.wait()
    port = free_port()
    server = start(a.lutq, a.model, a.adapters, port)
    try:
        names = [None] + list(files)
        with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
            texts = list(pool.map(lambda n: complete(port, a.prompt, a.n, n), names))
        rss = rss_mib(server)
    finally:
        server.terminate()
        server.wait()
    ok = True
    for name, text in zip(names, texts):
        want = run_cli(a.lutq, a.model, files.get(name), a.prompt, a.n)
        same = want.startswith(text) or text.startswith(want)
        ok &= same
        print(f"{name or '(model)':>10}: {json.dumps(text)}  {'= lutq run' if same else '!= lutq run: ' + json.dumps(want)}")
    print(f"server RSS: {plain_rss:.0f} MiB without adapters, {rss:.0f} MiB with {len(files)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
