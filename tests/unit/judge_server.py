"""A tiny OpenAI-compatible chat-completions server on 127.0.0.1 for the judge tests.

`script` is a list of behaviours consumed one per request ("ok", "429", "slow", "bad_json",
"no_choices", "401", "500", "filter400": Azure's content-filter 400, "null_content": a 200 whose
content is null, "two_tags": a 200 reply holding both "[[A]]" and "[[B]]", "echo_key": a 401 whose body echoes the Authorization header, "echo_token": a 401 whose body echoes the bare token
after 100 characters of padding, so a reply cut at 200 bytes holds only part of a long key, "echo_token_ok": a
200 whose reply text is the bare token); once it is used up
every request is "ok". "ok" answers with `answer(system, user)`; with `logprobs(system, user)` a
request asking for logprobs also gets them, as OpenAI's chat API returns them (one token, its
top_logprobs). Every request's headers and body are recorded.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


class JudgeServer:
    def __init__(self, answer: Callable[[str, str], str] = lambda s, u: "[[A]]", script: list[str] | None = None,
                 retry_after: str = "0.2", slow_s: float = 1.0,
                 logprobs: Callable[[str, str], dict[str, float]] | None = None) -> None:
        self.answer, self.script, self.retry_after, self.slow_s = answer, list(script or []), retry_after, slow_s
        self.logprobs = logprobs
        self.requests: list[dict] = []
        self.times: list[float] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer._lock:
                    outer.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    outer.times.append(time.monotonic())
                    action = outer.script.pop(0) if outer.script else "ok"
                if action == "slow":
                    time.sleep(outer.slow_s)
                if action == "429":
                    return self._send(429, b'{"error": "rate limited"}', {"Retry-After": outer.retry_after})
                if action in ("401", "500"):
                    return self._send(int(action), b'{"error": "nope"}')
                if action == "bad_json":
                    return self._send(200, b"this is not json")
                if action == "no_choices":
                    return self._send(200, b'{"id": "x", "choices": []}')
                if action == "filter400":
                    return self._send(400, json.dumps({"error": {
                        "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
                                   "content management policy.", "code": "content_filter", "status": 400}}).encode())
                if action == "echo_key":
                    return self._send(401, json.dumps({"error": {
                        "message": f"Incorrect API key provided: {self.headers.get('Authorization')}"}}).encode())
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                if action == "echo_token":
                    return self._send(401, json.dumps({"error": {"message": "x" * 100 + " key " + token}}).encode())
                msgs = body["messages"]
                if action == "null_content":
                    text, finish = None, "content_filter"
                elif action == "echo_token_ok":
                    text, finish = f"[[A]] your key is {token}", "stop"
                elif action == "two_tags":
                    text, finish = "Either [[A]] or [[B]]", "stop"
                else:
                    text, finish = outer.answer(msgs[0]["content"], msgs[-1]["content"]), "stop"
                choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                if outer.logprobs is not None and body.get("logprobs"):
                    lp = outer.logprobs(msgs[0]["content"], msgs[-1]["content"])
                    top = [{"token": t, "logprob": v, "bytes": list(t.encode())}
                           for t, v in sorted(lp.items(), key=lambda kv: -kv[1])]
                    choice["logprobs"] = {"content": [dict(top[0], top_logprobs=top)]}
                    choice["message"]["content"] = top[0]["token"]
                reply = {"id": "c1", "object": "chat.completion", "model": body["model"], "created": 0,
                         "choices": [choice], "usage": {"prompt_tokens": 10, "completion_tokens": 1,
                                                        "total_tokens": 11}}
                self._send(200, json.dumps(reply).encode())

            def _send(self, code: int, data: bytes, headers: dict | None = None) -> None:
                try:
                    self.send_response(code)
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "JudgeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def judge_config(self, **over) -> dict:
        cfg = {"type": "openai", "base_url": self.base_url, "model": "judge-model", "api_key_env": None,
               "max_retries": 3, "timeout_s": 5, "requests_per_minute": None, "backoff_s": 0.01}
        cfg.update(over)
        return cfg
