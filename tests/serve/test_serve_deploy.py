"""The arguments deploy/k8s.yaml and deploy/Dockerfile give ``voicekit serve`` parse with its own
command line, and say what the deployment needs: behind the Kubernetes Ingress the controller's
pods are trusted proxies (so the limit per client address counts each caller), and the plain
container, reached directly, trusts no one. (deploy/haproxy.cfg is run by test_serve_fleet.py.)"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from voicekit.cli.main import build_parser
from voicekit.serve.config import ServeConfig

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def k8s_args() -> list[str]:
    """The container's ``args`` in deploy/k8s.yaml (a flow sequence of double-quoted strings)."""
    found = re.findall(r"^\s*args:\s*(\[.*?\])", (DEPLOY / "k8s.yaml").read_text(), re.M | re.S)
    assert len(found) == 1, found
    return list(json.loads(found[0]))


def dockerfile_args() -> list[str]:
    """ENTRYPOINT + CMD of deploy/Dockerfile (exec form, lines joined at their backslash)."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    entry = json.loads(re.search(r"^ENTRYPOINT\s+(\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    cmd = json.loads(re.search(r"^CMD\s+(\[.*\])$", text, re.M).group(1))  # type: ignore[union-attr]
    assert entry == ["voicekit", "serve"], entry
    return list(cmd)


def serve(args: list[str]) -> tuple[argparse.Namespace, ServeConfig]:
    """``voicekit serve ARGS`` as its parser reads them, and the proxy and admission settings the
    server is built with (an unknown flag or a bad network fails here)."""
    parsed = build_parser().parse_args(["serve", *args])
    assert parsed.func.__module__ == "voicekit.cli.serve"
    config = ServeConfig(host="127.0.0.1", port=0, max_sessions=parsed.max_sessions,
                         max_pending_per_address=parsed.max_pending_per_address,
                         drain_timeout=parsed.drain_timeout, refuse_at_upgrade=parsed.refuse_at_upgrade,
                         trusted_proxies=tuple(parsed.trusted_proxy), proxy_header=parsed.proxy_header)
    return parsed, config


def test_kubernetes_workers_trust_the_ingress_controllers_pods() -> None:
    parsed, config = serve(k8s_args())
    assert parsed.assistant == "robot" and parsed.host == "0.0.0.0" and parsed.port == 8765
    assert config.refuse_at_upgrade and config.drain_timeout == 25
    # the Ingress controller's pods (the pod CIDR) are believed, and only they
    assert config.trusted_proxies, "deploy/k8s.yaml: no --trusted-proxy for the Ingress controller"
    assert config.trusts("10.244.3.7")
    assert not config.trusts("203.0.113.9") and not config.trusts("192.168.1.20")
    assert config.proxy_header == "x-forwarded-for"  # what ingress-nginx writes
    # the per-address limit counts callers, so it keeps its default instead of being raised for the proxy
    assert config.max_pending_per_address == ServeConfig().max_pending_per_address
    # the pod's grace period outlasts the drain (preStop pause + --drain-timeout)
    text = (DEPLOY / "k8s.yaml").read_text()
    grace = int(re.search(r"terminationGracePeriodSeconds:\s*(\d+)", text).group(1))  # type: ignore[union-attr]
    pause = int(re.search(r'command:\s*\["sleep",\s*"(\d+)"\]', text).group(1))  # type: ignore[union-attr]
    assert grace > pause + config.drain_timeout, (grace, pause, config.drain_timeout)


def test_the_container_reached_directly_trusts_no_proxy() -> None:
    parsed, config = serve(dockerfile_args())
    assert parsed.assistant == "robot" and parsed.host == "0.0.0.0" and parsed.port == 8765
    assert config.trusted_proxies == ()
    assert config.max_pending_per_address == ServeConfig().max_pending_per_address


def test_the_image_and_the_deployment_run_the_same_worker() -> None:
    """Apart from the proxy, the image's default command and the Deployment's agree."""
    def settings(args: list[str]) -> dict[str, object]:
        return {k: v for k, v in vars(serve(args)[0]).items() if k not in ("trusted_proxy", "proxy_header")}

    assert settings(dockerfile_args()) == settings(k8s_args())
