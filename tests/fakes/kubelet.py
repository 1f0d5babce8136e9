# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""A local fake kubelet on 127.0.0.1 serving a recorded ``GET /pods`` answer (a PodList as the
kubelet returns it, trimmed to the fields the processor reads plus some noise)."""
import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NODE = 'node-a'
POD_UID = '6f1c1b0e-8a4d-4e52-9f0e-3d2b7c9a1e01'
CONTAINER_ID = 'a3f8c2d1e4b5968778a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1'
SIDECAR_ID = 'b4e9d3e2f5c6a79889bac1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2'
DS_POD_UID = '0d6a6f9e-4c1e-4b8e-a7a2-1e2f3a4b5c6d'
DS_CONTAINER_ID = 'c5fae4f3a6d7b8a99acbd2e3f4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3'

RECORDED_PODS = {
    'kind': 'PodList',
    'apiVersion': 'v1',
    'metadata': {},
    'items': [
        {
            'metadata': {
                'name': 'checkout-7d9c8b6f5-x2x7q',
                'generateName': 'checkout-7d9c8b6f5-',
                'namespace': 'shop',
                'uid': POD_UID,
                'resourceVersion': '123456',
                'creationTimestamp': '2026-01-10T10:00:00Z',
                'labels': {'app': 'checkout', 'pod-template-hash': '7d9c8b6f5', 'tier': 'backend'},
                'annotations': {'team': 'payments', 'kubernetes.io/config.seen': '2026-01-10T10:00:00Z'},
                'ownerReferences': [
                    {'apiVersion': 'apps/v1', 'kind': 'ReplicaSet', 'name': 'checkout-7d9c8b6f5',
                     'uid': '11111111-2222-3333-4444-555555555555', 'controller': True, 'blockOwnerDeletion': True}
                ],
            },
            'spec': {
                'nodeName': NODE,
                'containers': [
                    {'name': 'app', 'image': 'registry.example.com:5000/shop/checkout:1.4.2'},
                    {'name': 'envoy', 'image': 'envoyproxy/envoy@sha256:0123abcd'},
                ],
            },
            'status': {
                'phase': 'Running',
                'podIP': '10.0.0.12',
                'containerStatuses': [
                    {'name': 'app', 'ready': True, 'restartCount': 0,
                     'image': 'registry.example.com:5000/shop/checkout:1.4.2',
                     'imageID': 'registry.example.com:5000/shop/checkout@sha256:feed',
                     'containerID': 'containerd://' + CONTAINER_ID},
                    {'name': 'envoy', 'ready': True, 'restartCount': 1,
                     'image': 'docker.io/envoyproxy/envoy@sha256:0123abcd',
                     'imageID': 'docker.io/envoyproxy/envoy@sha256:0123abcd',
                     'containerID': 'containerd://' + SIDECAR_ID},
                ],
            },
        },
        {
            'metadata': {
                'name': 'node-exporter-8k2lp',
                'namespace': 'monitoring',
                'uid': DS_POD_UID,
                'labels': {'app': 'node-exporter'},
                'ownerReferences': [{'apiVersion': 'apps/v1', 'kind': 'DaemonSet', 'name': 'node-exporter'}],
            },
            'spec': {'nodeName': NODE, 'containers': [{'name': 'exporter', 'image': 'prom/node-exporter:v1.8.0'}]},
            'status': {
                'phase': 'Running',
                'containerStatuses': [
                    {'name': 'exporter', 'image': 'prom/node-exporter:v1.8.0',
                     'containerID': 'cri-o://' + DS_CONTAINER_ID}
                ],
            },
        },
        {
            'metadata': {'name': 'pending-pod', 'namespace': 'shop', 'uid': 'ffffffff-0000-0000-0000-000000000000'},
            'spec': {'nodeName': NODE, 'containers': [{'name': 'c', 'image': 'busybox'}]},
            'status': {'phase': 'Pending'},
        },
    ],
}


class FakeKubelet:
    """``with FakeKubelet(token='t') as k: k.url`` -> ``http://127.0.0.1:<port>``.

    ``pods`` can be replaced between requests; ``status`` forces an error answer; ``delay``
    slows every answer; ``requests`` records (path, Authorization header)."""

    def __init__(self, token=None, pods=None):
        self.token = token
        self.pods = copy.deepcopy(RECORDED_PODS if pods is None else pods)
        self.status = 200
        self.delay = 0.0
        self.requests = []
        self.served = threading.Event()
        kubelet = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                kubelet.requests.append((self.path, self.headers.get('Authorization')))
                if kubelet.delay:
                    import time

                    time.sleep(kubelet.delay)
                if self.path != '/pods':
                    return self._reply(404, {'message': 'not found'})
                if kubelet.token and self.headers.get('Authorization') != 'Bearer ' + kubelet.token:
                    return self._reply(401, {'message': 'Unauthorized'})
                if kubelet.status != 200:
                    return self._reply(kubelet.status, {'message': 'error'})
                self._reply(200, kubelet.pods)
                kubelet.served.set()

            def _reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:{}'.format(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
