"""Jobs are private to whoever sent them: a job id is the capability to read and cancel a job, and no route shows
another client's ids. /v1/info counts every job but lists only those sent with the caller's own
X-Stylelayer-Client key (tests with two clients, A and B, and one without a key)."""

from __future__ import annotations

import json
import threading

from protocol_helpers import error_of, gradient, info_as, png_bytes, raw, stylelayer_client, submit_as

CONTENT = png_bytes(gradient(24, 16))
STYLE = png_bytes(gradient(8, 8))
KEY_A, KEY_B = "a" * 20 + "-client-one", "B" * 24 + "_two"


def submit(url: str, key: str | None) -> str:
    return submit_as(url, key, CONTENT, STYLE, iterations=2)


def info(url: str, key: str | None) -> dict:
    return info_as(url, key)


def test_info_lists_each_client_only_its_own_jobs(make_server, fake_engine) -> None:
    fake_engine.gate = threading.Event()
    srv, client = make_server(fake_engine)
    running = submit(srv.url, KEY_A)
    assert fake_engine.started.wait(5)
    queued_a, queued_b, anonymous = submit(srv.url, KEY_A), submit(srv.url, KEY_B), submit(srv.url, None)
    seen_a, seen_b, seen_none = info(srv.url, KEY_A), info(srv.url, KEY_B), info(srv.url, None)
    assert seen_a["own_jobs"] == [{"id": running, "state": "running"}, {"id": queued_a, "state": "queued"}]
    assert seen_b["own_jobs"] == [{"id": queued_b, "state": "queued"}]
    assert seen_none["own_jobs"] == []
    assert [w["job"] for w in seen_a["workers"]] == [running]  # the running job's id: to its owner only
    assert [w["job"] for w in seen_b["workers"]] == [None] and [w["job"] for w in seen_none["workers"]] == [None]
    for seen in (seen_a, seen_b, seen_none):  # everyone's jobs counted, nobody else's ids anywhere in the answer
        assert seen["jobs"]["queued"] == 3 and seen["jobs"]["running"] == 1
    text_b = json.dumps(seen_b)
    assert running not in text_b and queued_a not in text_b and anonymous not in text_b
    assert not any(i in json.dumps(seen_none) for i in (running, queued_a, queued_b, anonymous))
    # the id is the capability: B cannot read or cancel what it was never told about, A can
    fake_engine.gate.set()
    assert client.cancel(queued_a)["state"] in ("cancelled", "running", "done")


def test_a_stylize_jobs_id_is_not_listed_to_another_client(make_server, fake_engine) -> None:
    """/v1/stylize sends a job's id only with its answer: while it runs, another client's info does not show it."""
    fake_engine.gate = threading.Event()
    srv, _ = make_server(fake_engine)
    body, content_type = stylelayer_client._job_form(CONTENT, STYLE, None, {"iterations": 2}, None, None)
    answer: dict = {}
    caller = threading.Thread(
        target=lambda: answer.update(
            r=raw(srv.url + "/v1/stylize", "POST", body, {"Content-Type": content_type, "X-Stylelayer-Client": KEY_A})
        )
    )
    caller.start()
    assert fake_engine.started.wait(5)
    mine, other = info(srv.url, KEY_A), info(srv.url, KEY_B)
    assert len(mine["own_jobs"]) == 1 and mine["workers"][0]["job"] == mine["own_jobs"][0]["id"]
    assert other["own_jobs"] == [] and other["workers"][0]["job"] is None and other["jobs"]["running"] == 1
    fake_engine.gate.set()
    caller.join(10)
    status, headers, _ = answer["r"]
    assert status == 200 and headers["X-Stylelayer-Job"] == mine["own_jobs"][0]["id"]


def test_a_malformed_client_key_is_refused(server) -> None:
    srv, _ = server
    for bad in ("short", "x" * 129, "bad key with spaces!!", "ü" * 20):
        status, _, body = raw(srv.url + "/v1/info", headers={"X-Stylelayer-Client": bad.encode().decode("latin-1")})
        assert status == 400 and error_of(body)["code"] == "bad_request"
