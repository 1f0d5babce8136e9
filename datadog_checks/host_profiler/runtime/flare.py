# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""The ``host-profiler flare`` bundle: a zip support can read without the Agent.

``build_flare(output_zip, instance=..., diagnostics_payload=..., live_profile_folded=...,
logs=[...])`` writes:

- ``diagnostics.json``: the diagnostics document (schema ``diagnostics_schema.json``)
- ``config.yaml``: the scrubbed instance config
- ``probe.json``: kernel and BPF capability probe
- ``telemetry.json``: counter totals and last gauges
- ``live_profile.folded``: the short live profile (``stack count`` lines), when given
- ``runtimes.txt``: language runtimes whose frames lack names, and how to fix each, when any
- ``logs/<name>``: the tails of the given log files
- ``README.txt``: what each file is

Every member is text and every text passes through ``scrub.scrub_text`` (with the secrets
of the instance) before it is written. The zip is written next to its final path and
renamed into place, mode 0600.
"""
from __future__ import annotations

import datetime
import json
import os
import zipfile
from typing import Any, Dict, Iterable, List, Optional

import yaml

from . import scrub
from .diagnostics import package_version

MAX_LOG_BYTES = 5 * 1024 * 1024  # per log file: its tail
MAX_FOLDED_LINES = 100000

README = """host_profiler flare
===================
Generated {generated_at} by host_profiler {version} (pid {pid}).
Every file was scrubbed: API keys, application keys, authorization and exporter header
values are replaced by ********.

diagnostics.json     The diagnostics document the check keeps in the Agent log directory
                     (host_profiler_diagnostics.log): scrubbed effective config, sampler
                     state, telemetry totals, kernel/BPF probe, last errors, top stacks of
                     the last export, and under "extra.self_profiling" whether the
                     profiler profiles itself (ddprofiling) and where it sends.
                     Schema: runtime/diagnostics_schema.json.
config.yaml          The instance configuration, scrubbed.
probe.json           Kernel and BPF capability probe: kernel release, BTF, kernel headers,
                     perf_event_paranoid, effective capabilities (CAP_BPF, CAP_PERFMON,
                     CAP_SYS_ADMIN), tracefs/tracepoints, kprobes, BPF stats, BCC version.
telemetry.json       The profiler's own counters (lifetime totals) and last gauge values.
live_profile.folded  A short live CPU profile taken while the flare was built, one line per
                     stack: "comm;root;...;leaf count" (kernel frames end in _[k]).
                     Open with any flame graph tool (e.g. speedscope, flamegraph.pl).
runtimes.txt         Processes whose language frames have no names, with how to fix each: node
                     without --perf-basic-prof, JVMs the profiler could not attach to.
logs/                Tails of the profiler's log files, scrubbed.
"""


def _dump_json(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=str) + '\n'


def _folded_text(folded: Dict[str, int]) -> str:
    items = sorted(folded.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_FOLDED_LINES]
    return ''.join('{} {}\n'.format(stack, int(count)) for stack, count in items)


def runtimes_text(runtimes: Optional[Dict[str, Any]]) -> str:
    """The runtimes section of the diagnostics document (``runtimes.jit.JitRuntimes.diagnostics``),
    as lines people read: one per process whose frames lack names."""
    lines = []
    for n in (runtimes or {}).get('node_without_perf_map') or ():
        lines.append('node process {} ({}{}): {}; {}\n'.format(
            n.get('pid'), n.get('executable') or '?',
            ', container ' + n['container_id'][:12] if n.get('container_id') else '', n.get('problem'),
            n.get('how_to_fix')))
    for j in (runtimes or {}).get('jvm') or ():
        if j.get('last_error'):
            lines.append('JVM process {}: {}{}\n'.format(j.get('pid'), j['last_error'],
                                                        '; ' + j['how_to_fix'] if j.get('how_to_fix') else ''))
    return ''.join(lines)


def _read_tail(path: str, limit: int = MAX_LOG_BYTES) -> str:
    with open(path, 'rb') as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - limit))
        data = f.read()
    prefix = '[... {} earlier bytes not included ...]\n'.format(size - limit) if size > limit else ''
    return prefix + data.decode('utf-8', 'replace')


def build_flare(
    output_zip: str,
    *,
    instance: Optional[dict],
    diagnostics_payload: Optional[Dict[str, Any]],
    live_profile_folded: Optional[Dict[str, int]] = None,
    logs: Iterable[str] = (),
    probe: Optional[Dict[str, Any]] = None,
    telemetry: Optional[Dict[str, Any]] = None,
    secrets: Iterable[str] = (),
) -> str:
    """Writes the flare zip and returns its path.

    ``probe`` and ``telemetry`` default to the sections of ``diagnostics_payload``
    (``probe_kernel()`` when absent there too). ``secrets`` are extra values to scrub, on top
    of ``secrets_in(instance)`` and the process-wide registered secrets.
    """
    all_secrets: List[str] = sorted(
        set(scrub.secrets_in(instance or {})) | {str(s) for s in secrets if s}, key=len, reverse=True
    )

    def clean(text: str) -> bytes:
        return scrub.scrub_text(text, all_secrets).encode('utf-8')

    payload = dict(diagnostics_payload or {})
    if probe is None:
        probe = payload.get('probe')
    if not probe:
        from ..host.kernel import probe as probe_kernel

        try:
            probe = probe_kernel()
        except Exception as e:
            probe = {'error': str(e)}
    if telemetry is None:
        telemetry = payload.get('telemetry') or {'totals': {}, 'gauges': {}}
    if payload.get('config') is not None:
        payload['config'] = scrub.scrub_config(payload['config'], all_secrets)

    members: List[tuple] = []
    now = datetime.datetime.now(tz=datetime.timezone.utc).isoformat()
    members.append(
        ('README.txt', README.format(generated_at=now, version=package_version(), pid=os.getpid()))
    )
    members.append(('diagnostics.json', _dump_json(payload)))
    config_text = yaml.safe_dump(
        scrub.scrub_config(instance or {}, all_secrets), default_flow_style=False, sort_keys=True
    )
    members.append(('config.yaml', config_text))
    members.append(('probe.json', _dump_json(probe)))
    members.append(('telemetry.json', _dump_json(telemetry)))
    if live_profile_folded is not None:
        members.append(('live_profile.folded', _folded_text(live_profile_folded)))
    runtimes = runtimes_text((payload.get('extra') or {}).get('runtimes'))
    if runtimes:
        members.append(('runtimes.txt', runtimes))
    used = set()
    for log_path in logs or ():
        name = os.path.basename(str(log_path)) or 'log'
        while 'logs/' + name in used:
            name = '_' + name
        used.add('logs/' + name)
        try:
            text = _read_tail(str(log_path))
        except OSError as e:
            text = 'could not read {}: {}\n'.format(log_path, e)
        members.append(('logs/' + name, text))

    output_zip = os.path.abspath(str(output_zip))
    directory = os.path.dirname(output_zip)
    os.makedirs(directory, exist_ok=True)
    tmp = output_zip + '.partial'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, 'wb') as raw, zipfile.ZipFile(raw, 'w', compression=zipfile.ZIP_DEFLATED) as zf:
            for name, text in members:
                zf.writestr(name, clean(text))
        os.replace(tmp, output_zip)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return output_zip


FLARE_MEMBERS = ('README.txt', 'diagnostics.json', 'config.yaml', 'probe.json', 'telemetry.json', 'live_profile.folded')
