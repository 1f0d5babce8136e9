# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
import json
import re
import shutil
import subprocess

import pytest

from datadog_checks.host_profiler.profile import flamegraph, folded, summary
from datadog_checks.host_profiler.profile.builder import TRUNCATED_FRAME
from datadog_checks.host_profiler.profile.model import FRAME_KERNEL, Frame, Mapping, Profile, Resource, Sample

LIB = Mapping(0x7F0000000000, 0x7F0000100000, 0x1000, '/usr/lib/libfoo.so.1', '', '')
MAIN = Frame('main', 0x401000)
HOT = Frame('hot_loop', 0x401100)
UNKNOWN = Frame('', 0x7F0000000234, mapping=LIB)
K = Frame('do_syscall_64', 0xFFFFFFFF81000000, FRAME_KERNEL)


def profiles():
    a = Resource(
        {'process.pid': 42, 'process.executable.name': 'app'},
        samples=[
            Sample((HOT, MAIN), 6, 42, 'app'),
            Sample((K, UNKNOWN, MAIN), 3, 43, 'app-w'),
            Sample((HOT, MAIN), 1, 43, 'app-w'),  # same stack, other thread: merged in folded
        ],
        off_cpu_samples=[Sample((K, MAIN), 1000, 42, 'app')],
        comm='app',
    )
    b = Resource({'process.pid': 7, 'process.executable.name': 'bash'}, samples=[Sample((MAIN, TRUNCATED_FRAME), 2, 7, 'bash')])
    p1 = Profile(10**18, 10**10, 50_000_000, [a, b])
    p2 = Profile(10**18 + 10**10, 10**10, 50_000_000, [Resource({'process.pid': 42}, [Sample((HOT, MAIN), 4, 42, 'app')], comm='app')])
    return [p1, p2]


def test_folded_lines_and_merge():
    text = folded.to_folded(profiles())
    assert text.splitlines() == [
        'app;main;hot_loop 11',
        'app;main;libfoo.so.1+0x1234;do_syscall_64_[k] 3',
        'bash;[truncated];main 2',
    ]
    assert folded.parse_folded(text) == {
        'app;main;hot_loop': 11,
        'app;main;libfoo.so.1+0x1234;do_syscall_64_[k]': 3,
        'bash;[truncated];main': 2,
    }
    assert folded.to_folded(profiles(), off_cpu=True) == 'app;main;do_syscall_64_[k] 1000\n'


def test_parse_folded_handles_spaces_and_repeats():
    text = 'p;operator new(unsigned long) 3\np;operator new(unsigned long) 2\n\n'
    assert folded.parse_folded(text) == {'p;operator new(unsigned long)': 5}


def test_frame_names_are_sanitized():
    odd = Frame('a;b\nc', 1)
    p = Profile(0, 1, 1, [Resource({'process.pid': 1}, [Sample((odd,), 1)], comm='my proc')])
    assert folded.to_folded(p) == 'my_proc;a:b c 1\n'


def test_flamegraph_is_self_contained_and_embeds_data():
    counts = folded.folded_counts(profiles())
    counts['app;http://evil.example/</script><script>alert(1)'] = 1
    page = flamegraph.render_html(counts, title='host <profile>')
    assert not re.search(r'https?://', page)
    assert '</script><script>alert' not in page
    assert '<title>host &lt;profile&gt;</title>' in page
    assert page.count('<script>') == 1 and page.count('</script>') == 1
    # The data is embedded as JSON and decodes back to the counts.
    raw = page.split('const DATA=', 1)[1].split(';\n', 1)[0]
    assert json.loads(raw) == counts
    for feature in ('reset', 'search', 'tip', 'click'):
        assert feature in page


def test_summary():
    s = summary.summarize(profiles(), {'sampler.lost_samples': 4.0, 'sampler.samples': 100.0, 'processes.lost{reason:gone}': 1})
    assert s['samples'] == 16
    assert s['off_cpu_ns'] == 1000
    assert s['losses'] == {'processes.lost{reason:gone}': 1, 'sampler.lost_samples': 4.0}
    assert s['lost_total'] == 5
    assert s['processes'] == 2
    assert s['unique_stacks'] == 3
    assert s['profiles'] == 2 and s['duration_s'] == 20.0
    assert s['truncated_samples'] == 0  # Sample.truncated flag was not set on the fixture
    assert s['top_self'][0] == {'function': 'hot_loop', 'samples': 11, 'share': round(11 / 16, 4)}
    assert {'function': 'do_syscall_64_[k]', 'samples': 3, 'share': round(3 / 16, 4)} in s['top_self']
    assert s['top_total'][0] == {'function': 'main', 'samples': 16, 'share': 1.0}
    assert all(t['function'] != '[truncated]' for t in s['top_self'] + s['top_total'])
    assert s['top_processes'][0]['comm'] == 'app'
    json.dumps(s)


# A minimal DOM stand-in: enough to run the page's script under node and check that it
# builds the tree, renders frames, searches and zooms without errors.
NODE_STUB = r"""
const els={};
function El(id){return{id,style:{},children:[],clientWidth:1000,offsetWidth:100,listeners:{},textContent:'',
 addEventListener(t,f){this.listeners[t]=f;},appendChild(c){if(c.frag)this.children.push(...c.children);else this.children.push(c);},
 set onclick(f){this.listeners.click=f;}};}
global.document={getElementById(id){return els[id]||(els[id]=El(id));},createElement(){return El();},
 createDocumentFragment(){const f=El();f.frag=true;return f;},addEventListener(){}};
global.addEventListener=()=>{};global.innerWidth=1200;
const fs=require('fs');eval(fs.readFileSync(process.argv[2],'utf8'));
const fg=els.fg;
const n=fg.children.length, names=fg.children.map(c=>c._n.n);
els.q.listeners.input({target:{value:'hot'}});
const matched=els.info.textContent;
const target=fg.children.find(c=>c._n.n==='main');
fg.listeners.click({target});const zoomed=els.info.textContent, zn=fg.children.length;
fg.listeners.mousemove({target,clientX:5,clientY:5});
console.log(JSON.stringify({n,names,matched,zoomed,zn,tip:els.tip.textContent}));
"""


@pytest.mark.skipif(shutil.which('node') is None, reason='node not installed')
def test_flamegraph_script_runs(tmp_path):
    page = flamegraph.render_html(folded.folded_counts(profiles()))
    script = page.split('<script>', 1)[1].split('</script>', 1)[0]
    (tmp_path / 'page.js').write_text(script)
    (tmp_path / 'stub.js').write_text(NODE_STUB)
    out = subprocess.run(['node', str(tmp_path / 'stub.js'), str(tmp_path / 'page.js')], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r['names'][:4] == ['all', 'app', 'main', 'hot_loop']
    assert 'do_syscall_64_[k]' in r['names']
    assert r['matched'] == 'total 16 | matched 11 (68.75%)'
    assert r['zoomed'].startswith('total 16 | zoom 14 (87.50%)')
    assert r['tip'].startswith('main') and '87.50% of total' in r['tip']
