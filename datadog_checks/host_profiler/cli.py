# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""``host-profiler``: the same check, without the Agent.

    host-profiler run   [--config F] [--duration S] [--frequency HZ] [--interval S] [--output DIR]
    host-profiler check [--config F] [--times N] [--json]
    host-profiler flare [--config F] [--output ZIP] [--duration S]
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import signal
import sys
import time
from typing import Any, Dict, List, Optional

DEFAULT_OUTPUT = 'host-profiler-output'
MERGE_EVERY = 20  # profiles kept before merging: bounds memory of long runs
FLUSH_TIMEOUT_S = 30.0


def _read_config(path: Optional[str]) -> Dict[str, Any]:
    from .config.loader import read_instance

    return read_instance(path) if path else {}


def _section(instance: Dict[str, Any], key: str) -> Dict[str, Any]:
    if instance.get(key) is None:
        instance[key] = {}
    value = instance[key]
    return value if isinstance(value, dict) else {}


def _make_check(instance: Dict[str, Any]):
    from .check import HostProfilerCheck

    instance = dict(instance)
    instance.setdefault('mode', 'standalone')
    check = HostProfilerCheck('host_profiler', {}, [instance])
    # Run the initialisations (converter, config models, pipeline) now, so that a bad config
    # is reported with its key path before anything starts.
    check.run_check_initializations()
    return check


class _Signals:
    """SIGINT/SIGTERM received by ``run``. The handler counts the signal, then raises
    KeyboardInterrupt to cut short what the main thread is doing. Python drops an exception raised
    inside a garbage-collector callback or a finalizer ("Exception ignored in ..."): the count
    still tells the main loop and the final flush to stop, and such a drop is not printed."""

    count = 0
    previous_hook = None

    @classmethod
    def handler(cls, signum, _frame) -> None:
        cls.count += 1
        raise KeyboardInterrupt('signal {}'.format(signum))

    @staticmethod
    def unraisable(hook):
        def quiet(unraisable) -> None:
            if isinstance(unraisable.exc_value, KeyboardInterrupt):
                return  # a signal raised inside a finalizer: counted, acted on by the main loop
            hook(unraisable)

        return quiet


def _stop_on_signals() -> None:
    """SIGTERM (systemd, docker, kill) and SIGINT end a run the same way: flush the exports and
    write the outputs. SIGINT is installed even when inherited as ignored (a background job of a
    non-interactive shell)."""
    _Signals.count = 0
    _Signals.previous_hook = sys.unraisablehook
    sys.unraisablehook = _Signals.unraisable(sys.unraisablehook)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _Signals.handler)


def _flush(check, timeout_s: float, signals: int) -> bool:
    """Wait for the exports to be delivered, at most ``timeout_s``; a signal after the first
    ``signals`` ends the wait."""
    if check.pipeline is None:
        return True
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if check.pipeline.flush(max(0.0, min(0.25, remaining))):
            return True
        if remaining <= 0 or _Signals.count != signals:
            return False


def _stop(check, timeout_s: float = 10.0) -> None:
    """cancel() only signals; a command about to exit also waits (bounded) for the sampler
    thread to detach its BPF programs."""
    receiver = check.pipeline.receiver if check.pipeline else None
    check.cancel()
    if receiver is not None:
        receiver.join(timeout_s)
    if check.pipeline is not None:  # its last upload, bounded by the forward timeout
        check.pipeline.self_profiling.join(timeout_s)


def _stop_and_collect(check) -> Any:
    if check.pipeline is None:
        return None
    try:
        return check.pipeline.stop_and_collect()
    except KeyboardInterrupt:  # a second signal: exit without the last samples
        return None
    except Exception as e:  # noqa: BLE001 - the outputs of the earlier runs are still written
        print('host-profiler: collecting the last samples failed: {}'.format(e), file=sys.stderr)
        return None


def _config_error(e: Exception) -> int:
    """One line on stderr, exit code 2: nothing has started yet (no BPF program, no thread)."""
    from .config.validation import one_line

    print('host-profiler: configuration error: {}'.format(one_line(e)), file=sys.stderr)
    return 2


def _final_phase(check, profiles: List[Any]) -> bool:
    """After the last run: collect what was sampled since it, flush the exports (bounded by
    FLUSH_TIMEOUT_S), stop. Another SIGINT/SIGTERM meanwhile cuts the wait short, quietly: the
    outputs are still written. Returns whether every export was delivered."""
    flushed = interrupted = False
    signals = _Signals.count  # the one that ended the run, if any
    try:
        # what was sampled since the last run (a signal comes between runs) is exported too
        last = _stop_and_collect(check)
        if last is not None and last.resources:
            profiles.append(last)
        flushed = _flush(check, FLUSH_TIMEOUT_S, signals)
        interrupted = _Signals.count != signals
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # from here on the outputs are written whatever comes: further signals are ignored
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
    if interrupted:
        print('host-profiler: interrupted during the final flush: pending exports were not delivered',
              file=sys.stderr)
    _stop(check)
    if check.diagnostics is not None:  # it ends with the whole run's totals (else up to a minute old)
        check.diagnostics.write()
    return flushed


def cmd_run(args: argparse.Namespace) -> int:
    from datadog_checks.base import ConfigurationError

    from .exporters.registry import all_keys as all_exporter_keys
    from .profile import flamegraph, pprof
    from .profile.folded import folded_counts, format_folded
    from .profile.merge import merge_profiles
    from .profile.summary import summarize
    from .runtime.status_line import StatusLine

    try:
        instance = _read_config(args.config)
    except ConfigurationError as e:
        return _config_error(e)
    # a section written as an empty key is a section with defaults; any other wrong type is left
    # for the converter, which reports it with its key path
    receiver = _section(instance, 'receiver')
    if args.frequency:
        receiver['samples_per_second'] = args.frequency
    instance['min_collection_interval'] = args.interval
    exporters = _section(instance, 'exporters')
    has_exporter = any(exporters.get(k) for k in all_exporter_keys())
    output = args.output or (None if has_exporter else DEFAULT_OUTPUT)
    if output:
        os.makedirs(output, exist_ok=True)
        # --output adds a local file exporter beside any configured exporter.
        if not exporters.get('file'):
            exporters['file'] = {'directory': output, 'formats': ['otlp']}  # writes DIR/profiles/*.otlp.pb
    try:
        check = _make_check(instance)
    except ConfigurationError as e:
        return _config_error(e)

    status = StatusLine(check.telemetry)
    log_handler = getattr(args, 'log_handler', None)
    if log_handler is not None:
        log_handler.status_line = status  # log records never land inside the status line
    profiles: List[Any] = []
    _stop_on_signals()
    try:
        check.run()  # first run: starts the sampler thread
        if not check.last_result or not check.last_result.sampling:
            error = check.last_result.sampler_error if check.last_result else 'initialisation failed'
            print('host-profiler: cannot sample: {}'.format(error), file=sys.stderr)
            return 1
        # --duration counts sampling time, not start-up.
        sampling_started = time.monotonic()
        deadline = sampling_started + args.duration
        while not _Signals.count:
            now = time.monotonic()
            time.sleep(max(0.0, min(args.interval, deadline - now)))
            if _Signals.count:
                break
            error = check.run()
            if error:
                print('host-profiler: check run failed: {}'.format(error), file=sys.stderr)
            result = check.last_result
            if result is not None and result.profile is not None and result.profile.resources:
                profiles.append(result.profile)
                if len(profiles) > MERGE_EVERY:
                    profiles = [merge_profiles(profiles)]
            if sys.stderr.isatty() or args.status:
                status.write(sys.stderr)
            if time.monotonic() >= deadline:
                break
    except KeyboardInterrupt:
        pass
    finally:
        status.finish()
        if log_handler is not None:
            log_handler.status_line = None
        flushed = _final_phase(check, profiles)
        if _Signals.previous_hook is not None:
            sys.unraisablehook, _Signals.previous_hook = _Signals.previous_hook, None
    if not flushed:
        print('host-profiler: some exports could not be delivered within {:.0f} s'.format(FLUSH_TIMEOUT_S),
              file=sys.stderr)
    if output:
        _write_outputs(output, profiles, check, pprof, flamegraph, folded_counts, format_folded, merge_profiles,
                       summarize)
        print('host-profiler: wrote {}'.format(output), file=sys.stderr)
    return 0


def _write_outputs(output, profiles, check, pprof, flamegraph, folded_counts, format_folded, merge_profiles,
                   summarize) -> None:
    merged = [merge_profiles(profiles)] if profiles else []
    counts = folded_counts(merged) if merged else {}
    with open(os.path.join(output, 'stacks.folded'), 'w') as f:
        f.write(format_folded(counts))
    pprof.write(os.path.join(output, 'profile.pb.gz'), merged)  # an empty profile when nothing was sampled
    host = (check.hostname() if check.hostname else '') or os.uname().nodename
    flamegraph.write(os.path.join(output, 'flamegraph.html'), counts, title='host_profiler: {}'.format(host))
    summary = summarize(merged, check.telemetry.totals())
    with open(os.path.join(output, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2, sort_keys=True)


def cmd_check(args: argparse.Namespace) -> int:
    """Run the check as ``datadog-agent check`` does and print what it submitted."""
    from datadog_checks.base import ConfigurationError
    from datadog_checks.base.stubs import aggregator, datadog_agent

    aggregator.reset()
    try:
        instance = _read_config(args.config)
        instance.setdefault('min_collection_interval', args.interval)
        check = _make_check(instance)
    except ConfigurationError as e:
        return _config_error(e)
    errors = []
    try:
        for i in range(args.times):
            if i:
                time.sleep(args.pause)
            error = check.run()
            if error:
                errors.append(json.loads(error))
    finally:
        _stop(check)
    metrics = []
    for name in sorted(aggregator._metrics):
        for m in aggregator._metrics[name]:
            metrics.append({'metric': m.name, 'type': _TYPE_NAMES.get(m.type, m.type), 'value': m.value,
                            'tags': list(m.tags)})
    service_checks = []
    for name in sorted(aggregator._service_checks):
        for sc in aggregator._service_checks[name]:
            service_checks.append({'check': sc.name, 'status': _STATUS_NAMES.get(sc.status, sc.status),
                                   'tags': list(sc.tags), 'message': sc.message})
    metadata = dict(datadog_agent._metadata) if hasattr(datadog_agent, '_metadata') else {}
    report = {'metrics': metrics, 'service_checks': service_checks, 'errors': errors,
              'metadata': {str(k): v for k, v in metadata.items()}}
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        for m in metrics:
            print('{metric:<50} {type:<6} {value:>14.4f}  {tags}'.format(**dict(m, tags=','.join(m['tags']))))
        for sc in service_checks:
            print('service check {check}: {status} {message}'.format(**dict(sc, message=sc['message'] or '')))
        for e in errors:
            print('error: {}'.format(e), file=sys.stderr)
    return 1 if errors else 0


_TYPE_NAMES = {0: 'gauge', 1: 'rate', 2: 'count', 3: 'monotonic_count', 4: 'counter', 5: 'histogram',
               6: 'historate'}
_STATUS_NAMES = {0: 'OK', 1: 'WARNING', 2: 'CRITICAL', 3: 'UNKNOWN'}


def cmd_flare(args: argparse.Namespace) -> int:
    """A diagnostics zip: scrubbed config, probes, counters, errors and a short live profile."""
    from datadog_checks.base import ConfigurationError

    from .profile.folded import folded_counts
    from .profile.merge import merge_profiles
    from .runtime.flare import build_flare

    try:
        instance = _read_config(args.config)
        instance.setdefault('min_collection_interval', 1)
        instance['exporters'] = {}  # the live profile stays local
        check = _make_check(instance)
    except ConfigurationError as e:
        return _config_error(e)
    profiles = []
    if check.pipeline is not None:  # the flare reports self-profiling's settings; it sends nothing
        check.pipeline.self_profiling.hold('host-profiler flare sends nothing')
    try:
        check.run()
        deadline = time.monotonic() + args.duration
        while check.last_result and check.last_result.sampling and time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            check.run()
            if check.last_result.profile is not None and check.last_result.profile.resources:
                profiles.append(check.last_result.profile)
    finally:
        _stop(check)
    live = folded_counts([merge_profiles(profiles)]) if profiles else None
    output = args.output or 'host-profiler-flare-{}.zip'.format(time.strftime('%Y%m%d-%H%M%S'))
    logs = [check.diagnostics.path] if check.diagnostics and os.path.exists(check.diagnostics.path) else []
    build_flare(output, instance=copy.deepcopy(check.instance),
                diagnostics_payload=check.diagnostics.payload() if check.diagnostics else None,
                live_profile_folded=live, logs=logs)
    print(output)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='host-profiler', description='Whole-host continuous profiler (eBPF).')
    parser.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    sub = parser.add_subparsers(dest='command', required=True)

    run = sub.add_parser('run', help='profile this host and write/export profiles')
    run.add_argument('--config', help='conf.yaml (the check instance); standalone converter rules apply')
    run.add_argument('--duration', type=float, default=60.0, help='sampling time in seconds (default 60)')
    run.add_argument('--frequency', type=int, default=0, help='samples per second per CPU (default: config, 20)')
    run.add_argument('--interval', type=float, default=10.0, help='export interval in seconds (default 10)')
    run.add_argument('--output', help='directory for local outputs (default {} when no exporter is configured)'
                     .format(DEFAULT_OUTPUT))
    run.add_argument('--status', action='store_true', help='print the status line even when not on a terminal')
    run.set_defaults(func=cmd_run)

    check = sub.add_parser('check', help='run the check as `datadog-agent check` does')
    check.add_argument('--config')
    check.add_argument('--times', type=int, default=1)
    check.add_argument('--pause', type=float, default=1.0, help='seconds between runs')
    check.add_argument('--interval', type=float, default=15.0)
    check.add_argument('--json', action='store_true')
    check.set_defaults(func=cmd_check)

    flare = sub.add_parser('flare', help='write a diagnostics zip')
    flare.add_argument('--config')
    flare.add_argument('--output')
    flare.add_argument('--duration', type=float, default=5.0, help='seconds of live profile (default 5)')
    flare.set_defaults(func=cmd_flare)
    return parser


def _install_log_handler(verbose: bool):
    """The command's one stderr handler (replacing one left by an earlier main() in this process),
    aware of the live status line. ``-v`` shows DEBUG; otherwise INFO lines (what the converter
    added to the configuration) are not shown, WARNING and above are."""
    from .runtime.scrub import install_log_scrubbing
    from .runtime.status_line import LogHandler

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, LogHandler)]:
        root.removeHandler(old)
    handler = LogHandler(sys.stderr)
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(name)s: %(message)s'))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    install_log_scrubbing(root)
    return handler


def main(argv: Optional[List[str]] = None) -> int:
    from datadog_checks.base import ConfigurationError

    args = build_parser().parse_args(argv)
    args.log_handler = _install_log_handler(args.verbose)
    try:
        return args.func(args)
    except ConfigurationError as e:  # raised after start-up (e.g. by an exporter): still one line
        return _config_error(e)
    finally:
        logging.getLogger().removeHandler(args.log_handler)
        args.log_handler.flush()


def console_main() -> None:
    """The ``host-profiler`` command: main(), then exit without the interpreter's teardown.

    By then every output file is written and closed, the exports are flushed and the sampler is
    stopped (and the kernel detaches what an exiting process holds anyway). Tearing down the
    heap (modules, symbol tables, parsed mappings) was most of the CPU of an exit, ~60 ms, more
    than the whole of an export (docs/benchmarks.md, "CPU after start-up").
    """
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == '__main__':
    console_main()
