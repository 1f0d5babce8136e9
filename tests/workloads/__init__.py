# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""Real workloads the tests compile and run (gcc; golang-go and node where a test needs them)."""
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))

# -O0: gcc 12 omits the frame pointer of leaf functions at -O1 even with -mno-omit-leaf-frame-pointer.
FRAME_POINTERS = ('-O0', '-fno-omit-frame-pointer')
NO_FRAME_POINTERS = ('-O2', '-fomit-frame-pointer', '-fno-inline')


def compile_c(source, out_dir, name=None, cflags=FRAME_POINTERS, defines=()):
    """Compile tests/workloads/<source> (or an absolute path) into out_dir; returns the binary path."""
    src = source if os.path.isabs(source) else os.path.join(HERE, source)
    binary = os.path.join(str(out_dir), name or os.path.splitext(os.path.basename(src))[0])
    cmd = ['gcc', *cflags, *('-D' + d for d in defines), '-o', binary, src]
    subprocess.run(cmd, check=True, capture_output=True)
    return binary


def run_until_ready(path):
    """Start a workload that prints 'ready' once set up; returns its Popen."""
    p = subprocess.Popen([path], stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b'ready'
    return p


def load_bias(pid, path):
    """Load bias of ``path`` in process ``pid``: where its offset-0 mapping starts, less its
    lowest PT_LOAD address (0 for a non-PIE executable)."""
    from datadog_checks.host_profiler.host.elf import read_elf_info

    info = read_elf_info(path)
    with open('/proc/{}/maps'.format(pid)) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == path and int(parts[2], 16) == 0:
                return int(parts[0].split('-')[0], 16) - min(s.vaddr for s in info.loads)
    raise AssertionError('{} not mapped at offset 0 in {}'.format(path, pid))


def start(binary, *args):
    return subprocess.Popen([binary, *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def compile_java(source, out_dir):
    """javac tests/workloads/<source> into out_dir; returns out_dir (the class path)."""
    src = source if os.path.isabs(source) else os.path.join(HERE, source)
    subprocess.run(['javac', '-d', str(out_dir), src], check=True, capture_output=True)
    return str(out_dir)


# The 3:1 split exact: both methods stay separate compiled methods (no inlining into main);
# quiet: no CompileCommand echo on the JVM's output.
JVM_SPLIT_FLAGS = ('-XX:CompileCommand=quiet', '-XX:CompileCommand=dontinline,JvmSplit::burn*')


def start_java(class_path, main_class, *args, jvm_args=JVM_SPLIT_FLAGS, stdout=subprocess.DEVNULL, cwd=None):
    """An unmodified JVM: no perf-map or frame-pointer flag."""
    return subprocess.Popen(['java', *jvm_args, '-cp', str(class_path), main_class, *map(str, args)],
                            stdout=stdout, stderr=subprocess.STDOUT, cwd=cwd)
