# (C) Datadog, Inc. 2026-present
# All rights reserved
# Licensed under a 3-clause BSD style license (see LICENSE)
"""A self-contained, offline flame graph page from folded stack counts.

No network: the CSS, the script and the data are inline. The page builds the call tree in
the browser, draws the frames as positioned ``div`` elements (frames narrower than a pixel
are skipped), zooms on click (the ancestors of the zoomed frame stay above it, click one to
zoom out; "Reset" or Escape goes back to the whole), highlights the frames that match a
search (substring or /regex/) with the share of samples they cover, and shows a tooltip
with the count and the share of the total and of the zoomed frame.
"""
from __future__ import annotations

import html
import json
from typing import Dict

_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font:12px monospace;margin:0;background:#fafafa;color:#222}
header{padding:6px 10px;display:flex;gap:10px;align-items:center;border-bottom:1px solid #ddd;position:sticky;top:0;background:#fafafa;z-index:2}
h1{font-size:14px;margin:0;flex:1}
#fg{position:relative;margin:4px 10px}
.f{position:absolute;height:17px;line-height:17px;overflow:hidden;white-space:nowrap;border-radius:2px;
box-sizing:border-box;border:1px solid rgba(255,255,255,.6);padding-left:3px;cursor:pointer}
.f:hover{border-color:#000}.a{opacity:.55}.m{background:#e040fb!important}
#tip{position:fixed;display:none;background:#fff;border:1px solid #999;padding:4px 6px;pointer-events:none;z-index:3;max-width:60%}
</style></head><body>
<header><h1>__TITLE__</h1><span id="info"></span>
<input id="q" placeholder="search (text or /regex/)" size="28"><button id="reset">Reset zoom</button></header>
<div id="fg"></div><div id="tip"></div>
<script>
const DATA=__DATA__;
const H=18,fg=document.getElementById('fg'),tip=document.getElementById('tip'),info=document.getElementById('info');
function node(n,p){return{n:n,v:0,s:0,c:new Map(),p:p};}
const root=node('all',null);
for(const [stack,cnt] of Object.entries(DATA)){let t=root;t.v+=cnt;
 for(const f of stack.split(';')){let c=t.c.get(f);if(!c){c=node(f,t);t.c.set(f,c);}c.v+=cnt;t=c;}t.s+=cnt;}
let zoom=root,re=null;
function color(n,d){if(d===0)return'#9e9e9e';if(d===1)return'#90a4ae';if(n.endsWith('_[k]'))return'hsl(30,85%,62%)';
 if(n.startsWith('['))return'#bdbdbd';let h=0;for(let i=0;i<n.length;i++)h=(h*31+n.charCodeAt(i))|0;
 if(n.includes('+0x'))return'hsl(0,0%,'+(70+Math.abs(h)%15)+'%)';return'hsl('+(Math.abs(h)%50)+',75%,'+(55+Math.abs(h>>8)%15)+'%)';}
function pct(v,t){return(100*v/t).toFixed(2)+'%';}
function depthOf(n){let d=0;while(n.p){n=n.p;d++;}return d;}
function render(){
 fg.textContent='';const W=fg.clientWidth,z0=depthOf(zoom),els=[];let maxd=0,matched=0;
 const anc=[];for(let a=zoom;a;a=a.p)anc.unshift(a);
 anc.forEach((a,d)=>{if(a!==zoom)els.push([a,d,0,W,true]);});
 (function walk(n,d,x,w,inMatch){const m=re&&re.test(n.n);if(m&&!inMatch)matched+=n.v;
  els.push([n,d,x,w,false,m]);maxd=Math.max(maxd,d);let cx=x;
  for(const c of [...n.c.values()].sort((a,b)=>a.n<b.n?-1:1)){const cw=w*c.v/n.v;if(cw>=1)walk(c,d+1,cx,cw,inMatch||m);cx+=cw;}
 })(zoom,z0,0,W,false);
 const frag=document.createDocumentFragment();
 for(const [n,d,x,w,isAnc,m] of els){const e=document.createElement('div');e.className='f'+(isAnc?' a':'')+(m?' m':'');
  e.style.cssText='left:'+x+'px;width:'+w+'px;top:'+(d*H)+'px;background:'+color(n.n,d);
  if(w>30)e.textContent=n.n;e._n=n;frag.appendChild(e);}
 fg.appendChild(frag);fg.style.height=((maxd+1)*H+4)+'px';
 info.textContent='total '+root.v+(zoom!==root?' | zoom '+zoom.v+' ('+pct(zoom.v,root.v)+')':'')+(re?' | matched '+matched+' ('+pct(matched,root.v)+')':'');}
fg.addEventListener('click',e=>{const n=e.target._n;if(n){zoom=n;render();}});
fg.addEventListener('mousemove',e=>{const n=e.target._n;if(!n){tip.style.display='none';return;}
 tip.textContent=n.n+' \\u2014 '+n.v+' samples, '+pct(n.v,root.v)+' of total, '+pct(n.v,zoom.v)+' of zoom, self '+n.s;
 tip.style.display='block';tip.style.left=Math.min(e.clientX+12,innerWidth-tip.offsetWidth-4)+'px';tip.style.top=(e.clientY+14)+'px';});
fg.addEventListener('mouseleave',()=>{tip.style.display='none';});
document.getElementById('reset').onclick=()=>{zoom=root;render();};
document.addEventListener('keydown',e=>{if(e.key==='Escape'){zoom=root;render();}});
document.getElementById('q').addEventListener('input',e=>{const q=e.target.value;
 try{re=!q?null:(q.length>2&&q[0]==='/'&&q.endsWith('/'))?new RegExp(q.slice(1,-1)):new RegExp(q.replace(/[.*+?^${}()|[\\]\\\\]/g,'\\\\$&'));}catch(_){re=null;}render();});
addEventListener('resize',render);render();
</script></body></html>
"""


def _script_json(obj) -> str:
    """JSON safe inside <script>: no '</', no '<!--', and '/' escaped (so no URL-looking text)."""
    s = json.dumps(obj, ensure_ascii=True, separators=(',', ':'), sort_keys=True)
    return s.replace('/', '\\/').replace('<', '\\u003c').replace('>', '\\u003e').replace('&', '\\u0026')


def render_html(folded_counts: Dict[str, int], title: str = 'host_profiler flame graph') -> str:
    """A self-contained HTML flame graph of ``{'comm;root;...;leaf': count}``."""
    data = {k: int(v) for k, v in folded_counts.items() if v > 0}
    head, tail = _TEMPLATE.split('__DATA__')
    escaped = html.escape(title)
    return head.replace('__TITLE__', escaped) + _script_json(data) + tail


def write(path: str, folded_counts: Dict[str, int], title: str = 'host_profiler flame graph') -> None:
    with open(path, 'w', encoding='utf-8') as f:
        f.write(render_html(folded_counts, title))
