# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Standalone enrichment from the kubelet (the role ``k8sattributes`` plays in the Go host profiler's
standalone collector).

The receiver already puts ``container.id`` and ``k8s.pod.uid`` (from the cgroup path) on each
resource. With ``enabled: true`` and a reachable kubelet, this processor adds the pod name, namespace, node,
container name, image, owner (replicaset/deployment/daemonset/statefulset/job) and the labels
and annotations selected in the config, as ``k8s.pod.label.<k>`` / ``k8s.pod.annotation.<k>``.

Nothing here blocks an export: ``process()`` only reads the last index (an immutable snapshot
swapped atomically). A background thread refreshes it every ``cache_ttl`` seconds, earlier when
a container unknown to the index shows up (rate-limited), and stops by itself when no export
asked for it for a while (one-shot runs never call ``close()``). A failed refresh keeps the
stale index and is counted.

Kubelet: ``GET https://<node>:10250/pods`` with the service-account token (``auth:
serviceaccount``, the default) or ``GET http://<node>:10255/pods`` (``auth: none``, the
read-only port). ``<node>`` is ``$NODE_NAME`` (downward API), else the host name.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from ..profile.model import Profile

TOKEN_PATH = '/var/run/secrets/kubernetes.io/serviceaccount/token'
_RUNTIME_PREFIXES = ('containerd://', 'docker://', 'cri-o://', 'crio://', 'cri-containerd://')
_OWNER_ATTRIBUTE = {
    'ReplicaSet': 'k8s.replicaset.name',
    'DaemonSet': 'k8s.daemonset.name',
    'StatefulSet': 'k8s.statefulset.name',
    'Job': 'k8s.job.name',
}

Attrs = Tuple[Tuple[str, str], ...]


def strip_runtime(container_id: str) -> str:
    for prefix in _RUNTIME_PREFIXES:
        if container_id.startswith(prefix):
            return container_id[len(prefix):]
    return container_id.split('://', 1)[-1]


def split_image(image: str) -> Tuple[str, str]:
    """``registry:5000/team/app:1.2@sha256:..`` -> (``registry:5000/team/app``, ``1.2``)."""
    image = image.split('@', 1)[0]
    slash = image.rfind('/')
    colon = image.rfind(':')
    if colon > slash:
        return image[:colon], image[colon + 1:]
    return image, ''


def _select(mapping: Dict[str, Any], keys: List[str]) -> Iterable[Tuple[str, Any]]:
    if not mapping or not keys:
        return ()
    if '*' in keys:
        return sorted(mapping.items())
    return [(k, mapping[k]) for k in keys if k in mapping]


class PodIndex:
    """What one ``/pods`` answer says, indexed by pod UID and by container id. Immutable once built."""

    __slots__ = ('pods', 'containers', 'fetched_at')

    def __init__(self, pods: Dict[str, Attrs], containers: Dict[str, Tuple[str, Attrs]], fetched_at: float) -> None:
        self.pods = pods  # pod uid -> pod attributes
        self.containers = containers  # container id -> (pod uid, container attributes)
        self.fetched_at = fetched_at

    @classmethod
    def build(cls, pod_list: Dict[str, Any], labels: List[str], annotations: List[str], fetched_at: float,
              max_pods: int) -> 'PodIndex':
        pods: Dict[str, Attrs] = {}
        containers: Dict[str, Tuple[str, Attrs]] = {}
        for item in (pod_list.get('items') or [])[:max_pods]:
            meta = item.get('metadata') or {}
            uid = meta.get('uid')
            if not uid:
                continue
            spec = item.get('spec') or {}
            status = item.get('status') or {}
            attrs: List[Tuple[str, str]] = [('k8s.pod.uid', uid)]
            for key, attr in (('name', 'k8s.pod.name'), ('namespace', 'k8s.namespace.name')):
                if meta.get(key):
                    attrs.append((attr, str(meta[key])))
            if spec.get('nodeName'):
                attrs.append(('k8s.node.name', str(spec['nodeName'])))
            for owner in meta.get('ownerReferences') or ():
                attr = _OWNER_ATTRIBUTE.get(owner.get('kind'))
                if attr and owner.get('name'):
                    attrs.append((attr, owner['name']))
                    # A ReplicaSet named <deployment>-<pod-template-hash> belongs to that deployment.
                    hash_label = (meta.get('labels') or {}).get('pod-template-hash')
                    if owner.get('kind') == 'ReplicaSet' and hash_label and owner['name'].endswith('-' + hash_label):
                        attrs.append(('k8s.deployment.name', owner['name'][: -len(hash_label) - 1]))
            for k, v in _select(meta.get('labels') or {}, labels):
                attrs.append(('k8s.pod.label.' + k, str(v)))
            for k, v in _select(meta.get('annotations') or {}, annotations):
                attrs.append(('k8s.pod.annotation.' + k, str(v)))
            pods[uid] = tuple(attrs)
            images = {c.get('name'): c.get('image') for c in (spec.get('containers') or []) + (spec.get('initContainers') or [])}
            for key in ('containerStatuses', 'initContainerStatuses', 'ephemeralContainerStatuses'):
                for cs in status.get(key) or ():
                    cid = cs.get('containerID')
                    if not cid:
                        continue
                    cattrs: List[Tuple[str, str]] = []
                    if cs.get('name'):
                        cattrs.append(('k8s.container.name', cs['name']))
                    image = images.get(cs.get('name')) or cs.get('image') or ''
                    if image:
                        name, tag = split_image(image)
                        cattrs.append(('container.image.name', name))
                        if tag:
                            cattrs.append(('container.image.tag', tag))
                    containers[strip_runtime(cid)] = (uid, tuple(cattrs))
        return cls(pods, containers, fetched_at)


class K8sAttributesProcessor:
    name = 'k8sattributes'

    def __init__(
        self,
        config: Optional[Dict[str, Any]] = None,
        *,
        http: Any = None,
        telemetry: Any = None,
        log: Any = None,
        clock: Callable[[], float] = time.monotonic,
        token_path: str = TOKEN_PATH,
        node_name: Optional[str] = None,
        background: bool = True,
        max_pods: int = 5000,
        min_refresh_interval: float = 5.0,
        request_timeout: float = 5.0,
    ) -> None:
        config = config or {}
        # `enabled` (spec default false) turns the kubelet lookup on; without it the resources keep
        # the container.id / k8s.pod.uid the receiver read from the cgroup path, nothing more.
        self.enabled = bool(config.get('enabled', False))
        self._auth = config.get('auth') or 'serviceaccount'
        self._tls_verify = config.get('tls_verify', True)
        if config.get('tls_ca_cert'):
            self._tls_verify = config['tls_ca_cert']
        self._labels = list(config.get('labels') or [])
        self._annotations = list(config.get('annotations') or [])
        self._ttl = float(config.get('cache_ttl', 60) or 60)
        self._url = self._pods_url(config.get('kubelet_url'), node_name)
        self._lookup = self.enabled
        # collaborators (injected by tests), then the bounds of each kubelet request
        self._http, self._telemetry, self._log, self._clock = http, telemetry, log, clock
        self._token_path = token_path
        self._background = background
        self._max_pods, self._min_refresh, self._timeout = max_pods, min_refresh_interval, request_timeout
        self._index = PodIndex({}, {}, float('-inf'))
        self._last_attempt = float('-inf')
        self._last_demand = clock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._thread_lock = threading.Lock()
        # container/pod ids missing from the index -> fetched_at of the index they were missing
        # from: an id still missing after a newer refresh does not trigger another one (a
        # container outside Kubernetes would otherwise cost one kubelet request per export).
        self._missing: Dict[str, float] = {}
        if telemetry is not None:
            for name in ('processors.kubelet.requests', 'processors.kubelet.errors',
                         'processors.kubelet.cache.hits', 'processors.kubelet.cache.misses'):
                telemetry.declare(name)

    # -- kubelet ---------------------------------------------------------------------------
    def _pods_url(self, url: Optional[str], node_name: Optional[str]) -> str:
        if not url:
            node = node_name or os.environ.get('NODE_NAME') or os.environ.get('DD_KUBERNETES_KUBELET_HOST') \
                or socket.gethostname()
            url = 'http://{}:10255'.format(node) if self._auth == 'none' else 'https://{}:10250'.format(node)
        url = url.rstrip('/')
        return url if url.endswith('/pods') else url + '/pods'

    @property
    def url(self) -> str:
        return self._url

    def _get_http(self) -> Any:
        if self._http is None:
            import requests

            self._http = requests.Session()
        return self._http

    def _headers(self) -> Dict[str, str]:
        headers = {'Accept': 'application/json'}
        if self._auth == 'serviceaccount':
            # Read at every refresh: projected service-account tokens rotate.
            with open(self._token_path, 'r') as f:  # SKIP_SAFE_OS_VALIDATION
                headers['Authorization'] = 'Bearer ' + f.read().strip()
        return headers

    def refresh(self) -> bool:
        """Fetch ``/pods`` now and swap the index. Returns False (stale index kept) on failure."""
        self._last_attempt = self._clock()
        self._count('processors.kubelet.requests')
        try:
            response = self._get_http().get(
                self._url, headers=self._headers(), verify=self._tls_verify, timeout=self._timeout
            )
            response.raise_for_status()
            data = response.json()
            index = PodIndex.build(data, self._labels, self._annotations, self._clock(), self._max_pods)
        except Exception as e:
            self._count('processors.kubelet.errors')
            if self._log is not None:
                self._log.warning('kubelet pod list from %s failed (keeping the previous one): %s', self._url, e)
            return False
        self._index = index
        if self._telemetry is not None:
            self._telemetry.gauge('processors.kubelet.pods', len(index.pods))
        return True

    def _count(self, name: str, value: int = 1) -> None:
        if self._telemetry is not None:
            self._telemetry.count(name, value)

    # -- background refresh -----------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._thread_lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name='host-profiler-kubelet', daemon=True)
            self._thread.start()

    def _run(self) -> None:
        idle_limit = max(3 * self._ttl, 180.0)
        while not self._stop.is_set():
            now = self._clock()
            if now - self._last_demand > idle_limit:
                return  # nobody exports any more (one-shot run, unscheduled check)
            if now - self._index.fetched_at >= self._ttl or self._wake.is_set():
                self._wake.clear()
                if now - self._last_attempt >= self._min_refresh or self._index.fetched_at == float('-inf'):
                    self.refresh()
            self._wake.wait(timeout=min(self._ttl, self._min_refresh))

    def start(self) -> None:
        """Prefetch the pod list in the background (optional; the first export does it otherwise)."""
        if self.enabled and self._lookup:
            self._last_demand = self._clock()
            if self._background:
                self._wake.set()
                self._ensure_thread()
            else:
                self.refresh()

    def close(self) -> None:
        """Stops the refresh thread (non-blocking: the thread exits at its next wake-up)."""
        self._stop.set()
        self._wake.set()

    # -- processing --------------------------------------------------------------------------
    def process(self, profile: Profile) -> Profile:
        if not self.enabled:
            return profile
        now = self._clock()
        self._last_demand = now
        index = self._index
        hits = misses = 0
        new_miss = False
        for resource in profile.resources:
            attributes = resource.attributes
            container_id = attributes.get('container.id')
            pod_uid = attributes.get('k8s.pod.uid')
            if not container_id and not pod_uid:
                continue
            found = False
            if container_id:
                entry = index.containers.get(container_id)
                if entry is not None:
                    found = True
                    pod_uid = pod_uid or entry[0]
                    for key, value in entry[1]:
                        if key not in attributes:
                            attributes[key] = value
            if pod_uid:
                pod = index.pods.get(pod_uid)
                if pod is not None:
                    found = True
                    for key, value in pod:
                        if key not in attributes:
                            attributes[key] = value
            if found:
                hits += 1
            else:
                misses += 1
                key = container_id or pod_uid
                seen = self._missing.get(key)
                if seen is None or seen >= index.fetched_at:
                    if len(self._missing) > 10000:
                        self._missing.clear()
                    self._missing[key] = index.fetched_at
                    new_miss = True
        self._count('processors.kubelet.cache.hits', hits)
        self._count('processors.kubelet.cache.misses', misses)
        if self._lookup:
            stale = now - index.fetched_at >= self._ttl
            if self._background:
                if stale or new_miss:
                    self._wake.set()
                self._ensure_thread()
            elif stale or (new_miss and now - self._last_attempt >= self._min_refresh):
                # Synchronous mode (tests, one-shot CLI): refresh for the *next* export.
                self.refresh()
        return profile
