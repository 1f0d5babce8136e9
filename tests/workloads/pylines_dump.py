"""Run by each CPython under test: prints JSON of code objects from a few stdlib modules with the
line CPython itself gives every instruction position (co_positions, co_lines, findlinestarts)."""
import dis
import inspect
import json
import sys
import types


def codes(co):
    yield co
    for c in co.co_consts:
        if isinstance(c, types.CodeType):
            for x in codes(c):
                yield x


def main():
    out = []
    for mod in (inspect, dis, json.decoder):
        with open(mod.__file__) as f:
            top = compile(f.read(), mod.__file__, 'exec')
        for co in codes(top):
            v = sys.version_info
            if v >= (3, 11):
                table = co.co_linetable
                lines = [p[0] or 0 for p in co.co_positions()]  # per code unit
                expected = list(enumerate(lines))
            elif v >= (3, 10):
                table = co.co_linetable
                expected = []
                for start, end, line in co.co_lines():
                    for off in range(start, end, 2):
                        expected.append((off, line or 0))
            else:
                table = co.co_lnotab
                starts = list(dis.findlinestarts(co))
                expected = []
                for ins in dis.get_instructions(co):
                    line = co.co_firstlineno
                    for off, ln in starts:
                        if off <= ins.offset:
                            line = ln
                    expected.append((ins.offset, line))
            out.append({'table': table.hex(), 'first': co.co_firstlineno, 'expected': expected})
    json.dump({'version': list(sys.version_info[:2]), 'codes': out}, sys.stdout)


if __name__ == '__main__':
    main()
