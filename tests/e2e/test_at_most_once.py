"""Dapr's built-in service retries resend a call only when it provably never reached
the callee app: a POST held by the app while its sidecar is SIGKILLed runs once and
the caller gets Dapr's error; a POST to an instance that is already down (connection
refused) is delivered to the other instance, once."""

from __future__ import annotations

import signal
import threading
import uuid

from tests.e2e.harness import App, Cluster, Response, Sidecar, request, wait_until


def _posts(apps: list[App], marker: str) -> list[tuple[int, str]]:
    """(app index, path) of every POST an app saw whose path carries ``marker``."""
    return [
        (index, str(entry["path"]))
        for index, app in enumerate(apps)
        for entry in app.received()
        if entry["method"] == "POST" and marker in str(entry["path"])
    ]


def _two_instances(cluster: Cluster) -> tuple[list[App], list[Sidecar], Sidecar]:
    cluster.certs_init()
    apps = [cluster.app("orders-1"), cluster.app("orders-2")]
    sidecars = [cluster.sidecar("orders", app) for app in apps]
    caller = cluster.sidecar("checkout")
    # Both instances known to the caller and answering before anything is killed.
    wait_until(
        lambda: (
            all(
                request(caller.http_port, "GET", f"/v1.0/invoke/orders/method/warm-{n}").status
                == 200
                for n in range(6)
            )
            and all(app.received() for app in apps)
        ),
        "both instances answer the caller",
    )
    return apps, sidecars, caller


def test_a_post_whose_callee_sidecar_dies_mid_call_runs_once(cluster: Cluster) -> None:
    apps, sidecars, caller = _two_instances(cluster)
    marker = uuid.uuid4().hex
    answers: list[Response] = []
    path = f"/v1.0/invoke/orders/method/slow/3000?id={marker}"
    sender = threading.Thread(
        target=lambda: answers.append(request(caller.http_port, "POST", path, b'{"n": 1}')),
        daemon=True,
    )
    sender.start()
    try:
        seen = wait_until(lambda: _posts(apps, marker), "the app holds the POST")
        # Its sidecar dies without a word while the app still holds the call.
        sidecars[seen[0][0]].process.send_signal(signal.SIGKILL)
    finally:
        sender.join(60)
    assert answers, "the caller got no answer"
    answer = answers[0]
    assert answer.status == 500, answer.body
    error = answer.json()
    assert isinstance(error, dict)
    assert error["errorCode"] == "ERR_DIRECT_INVOKE", error
    assert "failed to invoke, id: orders" in str(error["message"]), error
    # Executed exactly once: not resent to the other instance (nor the same one).
    assert len(_posts(apps, marker)) == 1, _posts(apps, marker)


def test_a_post_to_an_instance_already_down_is_delivered_elsewhere_once(
    cluster: Cluster,
) -> None:
    apps, sidecars, caller = _two_instances(cluster)
    # The first instance's sidecar dies: its registry row stays (no goodbye), so the
    # caller may still pick it and find its port closed (connection refused).
    sidecars[0].process.send_signal(signal.SIGKILL)
    sidecars[0].process.wait()
    markers = [uuid.uuid4().hex for _ in range(10)]
    for marker in markers:
        answer = request(
            caller.http_port, "POST", f"/v1.0/invoke/orders/method/order?id={marker}", b"{}"
        )
        assert answer.status == 200, answer.body
    for marker in markers:
        # Delivered once, and by the live instance.
        assert _posts(apps, marker) == [(1, f"/order?id={marker}")]
