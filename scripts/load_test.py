#!/usr/bin/env python3
"""Bounded load test of `lutq serve` over loopback (standard library only).

For each concurrency level (default 1, 4, 8, 16) it runs that many client threads, each sending
--requests streaming /v1/completions requests one after another, and reports per level:
aggregate generated tokens/s (all tokens / wall time of the level), time to first token and
inter-token latency p50 / p99, refused (429) and failed requests (a failure: any other status,
an error event, or a stream without its finish_reason, usage and [DONE]). Throughout, --idle
connections sit open and --slow connections trickle a request head at 1 byte/s (both reopened
when the server drops them), and a poller times GET /health every 50 ms on fresh connections:
its p50 / p99 / max and failures are reported per level. With a started server the RSS before
and after is printed. Every request is bounded by --max-tokens and a timeout, so the run ends by
itself.

  scripts/load_test.py --model MODEL.gguf [--lutq build/lutq]   # starts its own server (--parallel 8)
  scripts/load_test.py --url http://127.0.0.1:8080              # an already running server
"""
import argparse
import http.client
import json
import os
import re
import socket
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


class Refused(Exception):
    """429: the queue is full (counted apart from failures)."""


class Background:
    """Idle and slow (1 byte/s) connections plus a /health poller, until stop()."""

    def __init__(self, host, port, idle, slow):
        self.host, self.port, self.idle, self.slow = host, port, idle, slow
        self.stopping = False
        self.lock = threading.Lock()
        self.health, self.health_failed = [], 0
        self.threads = [threading.Thread(target=self.hold, daemon=True),
                        threading.Thread(target=self.poll, daemon=True)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping = True
        for t in self.threads:
            t.join(30)

    def take(self):
        with self.lock:
            h, f = self.health, self.health_failed
            self.health, self.health_failed = [], 0
        return h, f

    def connect(self):
        try:
            return socket.create_connection((self.host, self.port), timeout=5)
        except OSError:
            return None

    def hold(self):
        head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 4000 + b"\r\n\r\n"
        idle = [self.connect() for _ in range(self.idle)]
        slow = [[self.connect(), 0] for _ in range(self.slow)]
        end = time.time() + 7200
        while not self.stopping and time.time() < end:
            for i, c in enumerate(idle):  # reopen what the server dropped (head deadline)
                try:
                    if c is None or c.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) is not None:
                        if c is not None:
                            c.close()
                        idle[i] = self.connect()
                except BlockingIOError:
                    pass
                except OSError:
                    idle[i] = self.connect()
            for entry in slow:
                try:
                    entry[0].send(head[entry[1]:entry[1] + 1])
                    entry[1] = (entry[1] + 1) % len(head)
                except (OSError, AttributeError):
                    if entry[0] is not None:
                        entry[0].close()
                    entry[0], entry[1] = self.connect(), 0
            time.sleep(1.0)
        for c in idle + [e[0] for e in slow]:
            if c is not None:
                c.close()

    def poll(self):
        end = time.time() + 7200
        while not self.stopping and time.time() < end:
            t0 = time.perf_counter()
            try:
                c = http.client.HTTPConnection(self.host, self.port, timeout=10)
                c.request("GET", "/health")
                ok = c.getresponse().status == 200
                c.close()
            except OSError:
                ok = False
            with self.lock:
                if ok:
                    self.health.append(time.perf_counter() - t0)
                else:
                    self.health_failed += 1
            time.sleep(0.05)


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024.0


def one_request(host, port, prompt, max_tokens, timeout):
    """Streams one completion; returns (tokens, ttft, [inter-token gaps]) or raises."""
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0.8, "seed": 1, "stream": True,
                       "stream_options": {"include_usage": True}})
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    if r.status == 429:
        conn.close()
        raise Refused()
    if r.status != 200:
        raise RuntimeError(f"HTTP {r.status}: {r.read()[:200]!r}")
    ttft, last, gaps, tokens, done, finished = None, None, [], None, False, False
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
        if chunk["choices"] and chunk["choices"][0].get("finish_reason"):
            finished = True
        if chunk["choices"] and chunk["choices"][0]["text"]:
            now = time.perf_counter()
            if ttft is None:
                ttft = now - t0
            else:
                gaps.append(now - last)
            last = now
    conn.close()
    if not done or tokens is None or not finished:
        raise RuntimeError("stream ended early")
    return tokens, ttft, gaps


def run_level(host, port, streams, requests, prompt, max_tokens, timeout):
    lock = threading.Lock()
    stats = {"tokens": 0, "ttft": [], "gaps": [], "failed": 0, "refused": 0, "errors": []}

    def worker():
        for _ in range(requests):
            try:
                tokens, ttft, gaps = one_request(host, port, prompt, max_tokens, timeout)
                with lock:
                    stats["tokens"] += tokens
                    if ttft is not None:
                        stats["ttft"].append(ttft)
                    stats["gaps"].extend(gaps)
            except Refused:
                with lock:
                    stats["refused"] += 1
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
    ap.add_argument("--server-args", default="--quant-bits 4 --quant-group 64 --parallel 16 --ctx 512 --timeout 10 --quiet")
    ap.add_argument("--levels", default="1,4,8,16")
    ap.add_argument("--idle", type=int, default=100, help="idle connections held open throughout")
    ap.add_argument("--slow", type=int, default=20, help="connections sending a head at 1 byte/s throughout")
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
    bg = Background(host, port, args.idle, args.slow).start()
    rss0 = rss_mb(proc.pid) if proc else None
    bad = 0
    try:
        time.sleep(2)
        bg.take()
        print(f"background: {args.idle} idle + {args.slow} slow (1 byte/s) connections, /health every 50 ms")
        print(f"{'streams':>7} {'reqs':>5} {'refused':>7} {'failed':>6} {'tokens':>7} {'wall s':>7} {'agg tok/s':>9} "
              f"{'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'ITL p99':>8} {'health p50/p99/max ms':>22} {'h.fail':>6}")
        base = None
        for level in [int(x) for x in args.levels.split(",")]:
            s = run_level(host, port, level, args.requests, args.prompt, args.max_tokens, args.timeout)
            h, hf = bg.take()
            bad += s["failed"] + hf
            tps = s["tokens"] / s["wall"]
            base = base or tps
            hs = f"{percentile(h, 50) * 1e3:.1f}/{percentile(h, 99) * 1e3:.1f}/{max(h, default=0) * 1e3:.1f}"
            print(f"{level:>7} {level * args.requests:>5} {s['refused']:>7} {s['failed']:>6} {s['tokens']:>7} "
                  f"{s['wall']:>7.1f} {tps:>9.2f} {percentile(s['ttft'], 50):>9.3f} {percentile(s['ttft'], 99):>9.3f} "
                  f"{percentile(s['gaps'], 50):>8.3f} {percentile(s['gaps'], 99):>8.3f} {hs:>22} {hf:>6}"
                  f"   x{tps / base:.2f}", flush=True)
            for e in s["errors"][:3]:
                print("  error:", e)
    finally:
        bg.stop()
        if proc:
            print(f"server RSS: {rss0:.0f} MB at start, {rss_mb(proc.pid):.0f} MB at the end")
            proc.terminate()
            proc.wait(timeout=30)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
