# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Standalone health metrics: the telemetry snapshot as OTLP metrics.

Outside the Agent nobody submits ``host_profiler.*`` metrics, so, like the Go host profiler's
``metrics/profiler-internal-health`` pipeline, the standalone runner sends them to the
configured OTLP endpoint at ``<endpoint>/v1/metrics`` (``application/x-protobuf``):

- counts -> ``Sum`` (delta temporality, monotonic), start = previous export;
- gauges -> ``Gauge``;
- names ``host_profiler.<name>``, data point attributes from ``k:v`` tags
  (a tag without ``:`` becomes ``<tag>=true``);
- resource attributes ``service.name=host-profiler``, ``host.name`` and optional extras.

``OtlpMetricsExporter.export(metrics)`` never raises: failures are counted in telemetry
(``health_metrics.errors``, tag ``reason:``) and logged without URLs' credentials or
headers.
"""
from __future__ import annotations

import gzip
import logging
import socket
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from . import scrub
from .diagnostics import package_version
from .telemetry import COUNT, GAUGE, Metric, Telemetry

NAMESPACE = 'host_profiler.'
SERVICE_NAME = 'host-profiler'
SCOPE_NAME = 'host_profiler'
METRICS_PATH = '/v1/metrics'

_log = logging.getLogger(__name__)


def _any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def _attributes(items: Mapping[str, Any]) -> List[KeyValue]:
    return [KeyValue(key=k, value=_any_value(v)) for k, v in sorted(items.items())]


def tags_to_attributes(tags: Iterable[str]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for tag in tags:
        key, sep, value = str(tag).partition(':')
        out[key] = value if sep else 'true'
    return out


def _set_value(point, value: float) -> None:
    if float(value).is_integer() and abs(value) < 2**63:
        point.as_int = int(value)
    else:
        point.as_double = float(value)


def metrics_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip('/')
    if endpoint.endswith(METRICS_PATH):
        return endpoint
    return endpoint + METRICS_PATH


def build_metrics_request(
    metrics: Iterable[Metric],
    *,
    host_name: Optional[str] = None,
    start_time_unix_nano: int = 0,
    time_unix_nano: Optional[int] = None,
    service_name: str = SERVICE_NAME,
    service_version: Optional[str] = None,
    resource_attributes: Optional[Mapping[str, Any]] = None,
) -> ExportMetricsServiceRequest:
    """One ``ResourceMetrics`` / ``ScopeMetrics``; one OTLP ``Metric`` per name (points per tag set)."""
    now = time_unix_nano if time_unix_nano is not None else time.time_ns()
    res_attrs: Dict[str, Any] = {'service.name': service_name}
    res_attrs['service.version'] = service_version or package_version()
    res_attrs['host.name'] = host_name or socket.gethostname()
    res_attrs.update(resource_attributes or {})

    request = ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.CopyFrom(Resource(attributes=_attributes(res_attrs)))
    sm = rm.scope_metrics.add()
    sm.scope.CopyFrom(InstrumentationScope(name=SCOPE_NAME, version=package_version()))

    by_name: Dict[tuple, Any] = {}
    for m in metrics:
        key = (m.name, m.type)
        otlp_metric = by_name.get(key)
        if otlp_metric is None:
            otlp_metric = sm.metrics.add()
            otlp_metric.name = NAMESPACE + m.name
            if m.type == COUNT:
                otlp_metric.sum.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
                otlp_metric.sum.is_monotonic = True
            else:
                otlp_metric.gauge.SetInParent()
            by_name[key] = otlp_metric
        if m.type == COUNT:
            point = otlp_metric.sum.data_points.add()
            point.start_time_unix_nano = start_time_unix_nano or now
        elif m.type == GAUGE:
            point = otlp_metric.gauge.data_points.add()
        else:  # unknown type: skip
            continue
        point.time_unix_nano = now
        _set_value(point, m.value)
        point.attributes.extend(_attributes(tags_to_attributes(m.tags)))
    return request


class OtlpMetricsExporter:
    """Sends telemetry snapshots to ``<endpoint>/v1/metrics``.

    ``session`` is anything with ``post(url, data=, headers=, timeout=)`` returning an object
    with ``status_code`` (``requests.Session`` by default; the check may pass ``self.http``).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        session: Any = None,
        telemetry: Optional[Telemetry] = None,
        host_name: Optional[str] = None,
        resource_attributes: Optional[Mapping[str, Any]] = None,
        timeout: float = 10.0,
        gzip_body: bool = True,
        log: Optional[logging.Logger] = None,
    ) -> None:
        self.url = metrics_url(endpoint)
        self._headers = dict(headers or {})
        self._secrets = scrub.secrets_in({'headers': self._headers})
        for s in self._secrets:
            scrub.register_secret(s)
        if session is None:
            import requests

            session = requests.Session()
        self._session = session
        self._telemetry = telemetry
        self._host_name = host_name
        self._resource_attributes = dict(resource_attributes or {})
        self._timeout = timeout
        self._gzip = gzip_body
        self._log = log or _log
        self._last_time_ns: Optional[int] = None
        if telemetry is not None:
            telemetry.declare('health_metrics.errors')
            telemetry.declare('health_metrics.sent')

    def _error(self, reason: str, detail: str) -> None:
        if self._telemetry is not None:
            self._telemetry.count('health_metrics.errors', 1, tags=['reason:' + reason])
        self._log.warning(
            'Could not send health metrics to %s: %s',
            scrub.scrub_text(self.url, self._secrets),
            scrub.scrub_text(detail, self._secrets),
        )

    def export(self, metrics: Iterable[Metric], now_ns: Optional[int] = None) -> bool:
        """Encodes and POSTs one request. Returns True on a 2xx answer. Never raises."""
        now_ns = now_ns if now_ns is not None else time.time_ns()
        try:
            request = build_metrics_request(
                list(metrics),
                host_name=self._host_name,
                start_time_unix_nano=self._last_time_ns or now_ns,
                time_unix_nano=now_ns,
                resource_attributes=self._resource_attributes,
            )
            body = request.SerializeToString()
        except Exception as e:
            self._error('encode', '{}: {}'.format(type(e).__name__, e))
            return False
        self._last_time_ns = now_ns
        headers = dict(self._headers)
        headers['Content-Type'] = 'application/x-protobuf'
        if self._gzip:
            body = gzip.compress(body)
            headers['Content-Encoding'] = 'gzip'
        try:
            response = self._session.post(self.url, data=body, headers=headers, timeout=self._timeout)
        except Exception as e:
            self._error('network', type(e).__name__ + ': ' + str(e))
            return False
        status = getattr(response, 'status_code', 0)
        if 200 <= int(status or 0) < 300:
            if self._telemetry is not None:
                self._telemetry.count('health_metrics.sent', 1)
            return True
        self._error('http_{}'.format(status), 'HTTP {}'.format(status))
        return False
