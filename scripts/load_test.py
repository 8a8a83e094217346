#!/usr/bin/env python3
"""Bounded load test of `lutq serve` over loopback (standard library only).

For each concurrency level (default 1, 4, 8) it runs that many client threads, each sending
--requests streaming /v1/completions requests one after another, and reports per level:
aggregate generated tokens/s (all tokens / wall time of the level), time to first token and
inter-token latency p50 / p99, and failed requests. Every request is bounded by --max-tokens
and a timeout, so the run ends by itself.

  scripts/load_test.py --model MODEL.gguf [--lutq build/lutq]   # starts its own server (--parallel 8)
  scripts/load_test.py --url http://127.0.0.1:8080              # an already running server
"""
import argparse
import http.client
import json
import os
import re
import subprocess
import threading
import time
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def one_request(host, port, prompt, max_tokens, timeout):
    """Streams one completion; returns (tokens, ttft, [inter-token gaps]) or raises."""
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8, "seed": 1, "stream": True,
                       "stream_options": {"include_usage": True}})
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:200]!r}")
    ttft, last, gaps, tokens, done = None, None, [], None, False
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            done = True
            break
        chunk = json.loads(data)
        if "error" in chunk:
            raise RuntimeError(chunk["error"]["message"])
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        if chunk["choices"] and chunk["choices"][0]["text"]:
            now = time.perf_counter()
            if ttft is None:
                ttft = now - t0
            else:
                gaps.append(now - last)
            last = now
    conn.close()
    if not done or tokens is None:
        raise RuntimeError("stream ended early")
    return tokens, ttft, gaps


def run_level(host, port, streams, requests, prompt, max_tokens, timeout):
    lock = threading.Lock()
    stats = {"tokens": 0, "ttft": [], "gaps": [], "failed": 0, "errors": []}

    def worker():
        for _ in range(requests):
            try:
                tokens, ttft, gaps = one_request(host, port, prompt, max_tokens, timeout)
                with lock:
                    stats["tokens"] += tokens
                    if ttft is not None:
                        stats["ttft"].append(ttft)
                    stats["gaps"].extend(gaps)
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    stats["failed"] += 1
                    stats["errors"].append(str(e))

    threads = [threading.Thread(target=worker) for _ in range(streams)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["wall"] = time.perf_counter() - t0
    return stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", help="a running server; otherwise one is started from --model")
    ap.add_argument("--model")
    ap.add_argument("--lutq", default=os.path.join(ROOT, "build", "lutq"))
    ap.add_argument("--server-args", default="--quant-bits 4 --quant-group 64 --parallel 8 --ctx 512")
    ap.add_argument("--levels", default="1,4,8")
    ap.add_argument("--requests", type=int, default=2, help="sequential requests per stream")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--prompt", default="Once upon a time, in a small village by the sea,")
    args = ap.parse_args()

    proc = None
    if args.url:
        u = urllib.parse.urlparse(args.url)
        host, port = u.hostname, u.port or 80
    else:
        if not args.model or not os.path.exists(args.model):
            print("load_test: SKIP: give --url or an existing --model")
            return 0
        proc = subprocess.Popen([args.lutq, "serve", args.model, *args.server_args.split(), "--host", "127.0.0.1",
                                 "--port", "0"], stderr=subprocess.PIPE, text=True)
        host, port = "127.0.0.1", None
        for line in proc.stderr:
            m = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            raise SystemExit("load_test: the server did not start")
        threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    try:
        print(f"{'streams':>7} {'reqs':>5} {'failed':>6} {'tokens':>7} {'wall s':>7} {'agg tok/s':>9} "
              f"{'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8}")
        base = None
        for level in [int(x) for x in args.levels.split(",")]:
            s = run_level(host, port, level, args.requests, args.prompt, args.max_tokens, args.timeout)
            tps = s["tokens"] / s["wall"]
            base = base or tps
            print(f"{level:>7} {level * args.requests:>5} {s['failed']:>6} {s['tokens']:>7} {s['wall']:>7.1f} "
                  f"{tps:>9.2f} {percentile(s['ttft'], 50):>9.3f} {percentile(s['ttft'], 99):>9.3f} "
                  f"{percentile(s['gaps'], 50):>8.3f} {percentile(s['gaps'], 99):>8.3f}   x{tps / base:.2f}", flush=True)
            for e in s["errors"][:3]:
                print("  error:", e)
    finally:
        if proc:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
