"""The canary's weighted router: nginx in front of the two tracks, only while a canary takes a
share of the traffic that is neither none nor all.

A Service over both tracks splits traffic by ready replicas, so the share follows replica
arithmetic (10 % with 2 main replicas is 33 %) and drifts as an autoscaler moves one track. The
router sends each request to one of two track Services by weight, with nginx's smooth weighted
round robin: the share is the one asked for, whatever the replica counts. Each track Service
balances across its own pods.

    Service <name>          → router pods (while routing), else the track taking all traffic
    Service <name>-stable   → main track pods
    Service <name>-canary   → canary track pods
    Deployment <name>-router, ConfigMap <name>-router (nginx.conf)
"""

from __future__ import annotations

import hashlib

from modelyard.config import OperatorConfig
from modelyard.resources.common import (
    PRE_STOP_WAIT,
    TMP_MOUNT,
    Manifest,
    child_name,
    container_security_context,
    metadata,
    placement,
    pod_security_context,
    tmp_volume,
)
from modelyard.resources.jobs import Owner
from modelyard.resources.serving import (
    COMPONENT,
    KIND,
    TRACK_LABEL,
    build_service,
    selector_labels,
)

ROUTER = "router"
STABLE = "stable"
PORT = 8080
CONFIG_DIR = "/etc/modelyard-router"
# nginx keeps this many idle connections to each track open: no TCP handshake per request.
KEEPALIVE = 32
# ... and closes one idle this long, before a draining server would (its DRAIN_IDLE_SECONDS,
# 5 s): nginx never sends a request on a connection the server is closing, a POST nginx could not
# retry on the other track once its body was on the way (a 502). nginx's default is 60 s.
UPSTREAM_IDLE_SECONDS = 3
# A connection to a track Service takes well under a millisecond in a cluster. One that takes
# this long will not come (a ClusterIP the node does not route yet may drop the handshake): the
# request goes to the other track instead of waiting nginx's default minute.
CONNECT_SECONDS = 5
# The router's start-up probe: answered once both tracks answer their liveness path through
# their Services.
STARTUP_PATH = "/startupz"
PROGRESS_DEADLINE_SECONDS = 60


def router_name(owner: str) -> str:
    return child_name(owner, ROUTER)


def track_service_name(owner: str, track: str) -> str:
    """The Service of one track behind the router: <name>-stable (main) or <name>-canary."""
    return child_name(owner, STABLE if track == "main" else track)


def track_addresses(owner: Owner) -> tuple[str, str]:
    """host:port of the main and canary track Services, as the router's pods resolve them."""
    domain = f"{owner.namespace}.svc.cluster.local"
    return (
        f"{track_service_name(owner.name, 'main')}.{domain}:80",
        f"{track_service_name(owner.name, 'canary')}.{domain}:80",
    )


def nginx_config(stable: str, canary: str, canary_percent: int) -> str:
    """nginx.conf for a router sending `canary_percent` of requests to `canary` (host:port)
    and the rest to `stable`."""
    # Everything writable lives in /tmp: the root file system is read-only.
    return f"""worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path /tmp/client_body;
  proxy_temp_path /tmp/proxy;
  fastcgi_temp_path /tmp/fastcgi;
  uwsgi_temp_path /tmp/uwsgi;
  scgi_temp_path /tmp/scgi;
  # The model server enforces its own body limit (413) and timeouts.
  client_max_body_size 0;
  upstream tracks {{
    # One worker, smooth weighted round robin: exactly {canary_percent} of every 100 requests.
    server {stable} weight={100 - canary_percent} max_fails=0;
    server {canary} weight={canary_percent} max_fails=0;
    keepalive {KEEPALIVE};
    keepalive_timeout {UPSTREAM_IDLE_SECONDS}s;
  }}
  server {{
    listen {PORT};
    location = /healthz {{ return 200 "ok\\n"; }}
    # Until kube-proxy has programmed a new Service's address and endpoints on this node
    # (seconds on a busy node), connections to it are refused or hang; the start-up probe holds
    # the pod out of the model's Service until both tracks have answered through theirs once.
    location = {STARTUP_PATH} {{
      auth_request /startupz-canary;
      proxy_pass http://{stable}/v2/health/live;
      proxy_connect_timeout 1s;
    }}
    location = /startupz-canary {{
      internal;
      proxy_pass http://{canary}/v2/health/live;
      proxy_connect_timeout 1s;
    }}
    location / {{
      proxy_pass http://tracks;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_request_buffering off;
      proxy_buffering off;
      proxy_connect_timeout {CONNECT_SECONDS}s;
      # A request that could not reach its track goes to the other; an answer never does.
      proxy_next_upstream error timeout;
    }}
  }}
}}
"""


def build_router_config(owner: Owner, canary_percent: int) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(
            router_name(owner.name), owner.namespace, KIND, owner.name, owner.uid, COMPONENT
        ),
        "data": {"nginx.conf": nginx_config(*track_addresses(owner), canary_percent)},
    }


def build_router(
    owner: Owner, canary_percent: int, replicas: int, config: OperatorConfig
) -> Manifest:
    """The router Deployment; a new weight rolls it (the config's hash is in the template)."""
    name = router_name(owner.name)
    meta = metadata(name, owner.namespace, KIND, owner.name, owner.uid, COMPONENT)
    meta["labels"][TRACK_LABEL] = ROUTER
    selector = {**selector_labels(owner.name), TRACK_LABEL: ROUTER}
    config_text = nginx_config(*track_addresses(owner), canary_percent)
    checksum = hashlib.sha256(config_text.encode()).hexdigest()[:16]
    pod_spec: Manifest = {
        "automountServiceAccountToken": False,
        "securityContext": pod_security_context(),
        "containers": [
            {
                "name": ROUTER,
                "image": config.router_image,
                "imagePullPolicy": config.image_pull_policy,
                "command": ["nginx", "-c", f"{CONFIG_DIR}/nginx.conf", "-g", "daemon off;"],
                "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
                "startupProbe": {
                    "httpGet": {"path": STARTUP_PATH, "port": "http"},
                    "periodSeconds": 1,
                    "timeoutSeconds": 2,
                    # Five minutes for both tracks to become reachable, then a restart.
                    "failureThreshold": 300,
                },
                "readinessProbe": {
                    "httpGet": {"path": "/healthz", "port": "http"},
                    "periodSeconds": 2,
                },
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", "port": "http"},
                    "periodSeconds": 10,
                },
                # Then the image's stop signal lets nginx finish what it has (a new weight rolls
                # these pods).
                "lifecycle": PRE_STOP_WAIT,
                "resources": {
                    "requests": {"cpu": "50m", "memory": "32Mi"},
                    "limits": {"cpu": config.workload_cpu_limit, "memory": "128Mi"},
                },
                "securityContext": container_security_context(),
                "volumeMounts": [
                    TMP_MOUNT,
                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                ],
            }
        ],
        "volumes": [tmp_volume(config), {"name": "config", "configMap": {"name": name}}],
    }
    pod_spec.update(placement(config))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            # nginx has nothing to load: a router pod not ready this long after a change, with
            # both tracks ready, cannot reach them. The Deployment controller marks it, and the
            # ModelDeployment names it (not the default 10 minutes).
            "progressDeadlineSeconds": PROGRESS_DEADLINE_SECONDS,
            "selector": {"matchLabels": selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": {**meta["labels"]},
                    "annotations": {"modelyard.dev/router-config": checksum},
                },
                "spec": pod_spec,
            },
        },
    }


def build_track_service(owner: Owner, track: str) -> Manifest:
    """The Service the router sends one track's share to."""
    return build_service(owner, track, track_service_name(owner.name, track))
