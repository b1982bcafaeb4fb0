"""A standalone HTML page of samples: one file, no server, no network, opens from ``file://``.

``viser``'s own offline mode replays a recorded ``.viser`` file in its client, which has to be served over HTTP
(the client fetches the recording), so it cannot make a single file that works when double-clicked or attached
to a report. This page is therefore self-made: a small WebGL renderer (Lambert shading as in
:mod:`interhandgen.viz`, orbit/zoom, sample slider) and the meshes, inlined.

Payload (compact): vertices quantised to uint16 on the bounding box of all exported samples (step
``extent / 65535``, i.e. under 10 micrometres for hands), faces once per hand (shared by every sample), inside
masks as packed bits, all base64 in one JSON block. About 45 KB per sample for the open hand.
"""

from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from interhandgen._atomic import atomic_write_bytes
from interhandgen.exceptions import InputError
from interhandgen.viewer.scene import HAND_COLOURS, HIGHLIGHT_COLOUR, OBJECT_COLOUR, SIDES, describe
from interhandgen.viewer.source import SampleSource, SampleView

#: Samples exported by default (the page holds every mesh; see the module docstring for the size).
DEFAULT_EXPORT_SAMPLES = 64
QUANT_LEVELS = 65535
_CHUNK = 8  # samples posed and measured per batch (bounds memory; the exact queries dominate the time)


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def quantise(vertices: np.ndarray, lo: np.ndarray, step: float) -> np.ndarray:
    """Vertices [..., 3] metres -> uint16 codes on the grid ``lo + code * step`` (rounded to nearest)."""
    q = np.rint((np.asarray(vertices, dtype=np.float64) - lo) / step)
    if q.min() < 0 or q.max() > QUANT_LEVELS:
        raise ValueError("vertices outside the quantisation box")
    return q.astype("<u2")


def dequantise(codes: np.ndarray, lo: np.ndarray, step: float) -> np.ndarray:
    """Inverse of :func:`quantise` (what the page computes): float64 metres."""
    return np.asarray(lo, dtype=np.float64) + codes.astype(np.float64) * step


def build_payload(views: Sequence[SampleView], faces: dict, total: int, source_name: str,
                  highlight: bool = True) -> dict:
    """The JSON payload of the page for the given posed samples (see the module docstring)."""
    if not views:
        raise InputError("nothing to export: no samples chosen")
    pts = [v.left_vertices for v in views] + [v.right_vertices for v in views]
    pts += [np.asarray(v.obj.vertices) for v in views if v.obj is not None]
    allv = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in pts])
    lo, hi = allv.min(0), allv.max(0)
    step = max(float((hi - lo).max()), 1e-9) / QUANT_LEVELS
    for side in SIDES:
        if int(faces[side].max()) >= 65536:
            raise InputError(f"{side} hand has more than 65,536 vertices; the page stores hand faces as uint16")
    samples = []
    for v in views:
        entry = {
            "l": _b64(quantise(v.left_vertices, lo, step)),
            "r": _b64(quantise(v.right_vertices, lo, step)),
            "li": _b64(np.packbits(v.inside[0] & highlight, bitorder="little")),
            "ri": _b64(np.packbits(v.inside[1] & highlight, bitorder="little")),
            "text": describe(v.index, total, v.figures, v.category, v.seed, source_name).replace("**", "").replace("`", ""),
        }
        if v.obj is not None:
            entry["o"] = {"v": _b64(quantise(v.obj.vertices, lo, step)), "nv": int(len(v.obj.vertices)),
                          "f": _b64(np.asarray(v.obj.faces, dtype="<u4"))}
        samples.append(entry)
    return {
        "lo": lo.tolist(), "step": step,
        "nv": {side: int(len(views[0].left_vertices if side == "left" else views[0].right_vertices)) for side in SIDES},
        "faces": {side: _b64(np.asarray(faces[side], dtype="<u2")) for side in SIDES},
        "colours": {**{s: list(HAND_COLOURS[s]) for s in SIDES}, "highlight": list(HIGHLIGHT_COLOUR),
                    "object": list(OBJECT_COLOUR)},
        "title": f"{source_name}: {len(views)} of {total} samples",
        "samples": samples,
    }


def export_html(source: SampleSource, path: str | os.PathLike, indices: Sequence[int] | None = None,
                num: int = DEFAULT_EXPORT_SAMPLES, highlight: bool = True, progress: bool = True) -> Path:
    """Write the standalone page of ``indices`` (default: the first ``num`` samples) atomically; returns the path."""
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--export: the page must be an .html file, got {str(path)!r}")
    if indices is None:
        if not isinstance(num, int) or num < 1:
            raise InputError(f"--export-num must be an integer >= 1, got {num!r}")
        indices = range(min(num, len(source)))
    indices = list(indices)
    views = []
    with tqdm(total=len(indices), desc="posing and measuring", unit="sample", disable=not progress) as bar:
        for s in range(0, len(indices), _CHUNK):
            views += source.compute(indices[s:s + _CHUNK])
            bar.update(len(indices[s:s + _CHUNK]))
    payload = build_payload(views, source.faces, len(source), source.name, highlight)
    atomic_write_bytes(path, render_page(payload).encode("utf-8"))
    return path


def render_page(payload: dict) -> str:
    """The HTML text: the renderer and the payload inlined."""
    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    return (_PAGE.replace("__TITLE__", html.escape(payload["title"]))
            .replace("__DATA__", data))


_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
html,body{margin:0;height:100%;font:14px system-ui,sans-serif;background:#fff;color:#222}
#wrap{display:flex;height:100%}
#view{flex:1;position:relative;min-width:0}
canvas{width:100%;height:100%;display:block;cursor:grab}
#panel{width:300px;padding:12px;border-left:1px solid #ddd;overflow:auto;box-sizing:border-box}
#panel h1{font-size:15px;margin:0 0 10px}
#panel input[type=range]{width:100%}
#panel button{margin:4px 4px 4px 0}
#info{white-space:pre-wrap;margin-top:10px;line-height:1.5}
#err{position:absolute;top:10px;left:10px;color:#b00}
</style></head><body>
<div id="wrap"><div id="view"><canvas id="c"></canvas><div id="err"></div></div>
<div id="panel"><h1 id="title"></h1>
<input id="slider" type="range" min="0" value="0" step="1">
<div><button id="prev">Previous</button><button id="next">Next</button>
<label>index <input id="jump" type="number" min="0" value="0" style="width:70px"></label></div>
<div id="info"></div>
<p style="color:#777;font-size:12px">Drag to turn, wheel to zoom. Left hand blue, right hand orange,
regions inside the other hand red.</p></div></div>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
function bytes(b64){const s=atob(b64);const a=new Uint8Array(s.length);for(let i=0;i<s.length;i++)a[i]=s.charCodeAt(i);return a;}
function u16(b64){const b=bytes(b64);return new Uint16Array(b.buffer,0,b.length>>1);}
function u32(b64){const b=bytes(b64);return new Uint32Array(b.buffer,0,b.length>>2);}
function bit(bits,i){return (bits[i>>3]>>(i&7))&1;}
const canvas=document.getElementById("c");
const gl=canvas.getContext("webgl",{antialias:true,preserveDrawingBuffer:true});
if(!gl){document.getElementById("err").textContent="WebGL is not available in this browser.";throw new Error("no WebGL");}
gl.getExtension("OES_element_index_uint");
const VS=`attribute vec3 p;attribute vec3 n;attribute vec3 c;uniform mat4 mvp;uniform mat3 rot;varying vec3 vn;varying vec3 vc;
void main(){gl_Position=mvp*vec4(p,1.0);vn=rot*n;vc=c;}`;
const FS=`precision mediump float;varying vec3 vn;varying vec3 vc;uniform vec3 light;
void main(){float d=abs(dot(normalize(vn),light));gl_FragColor=vec4(vc*(0.3+0.7*d),1.0);}`;
function sh(t,s){const o=gl.createShader(t);gl.shaderSource(o,s);gl.compileShader(o);if(!gl.getShaderParameter(o,gl.COMPILE_STATUS))throw new Error(gl.getShaderInfoLog(o));return o;}
const prog=gl.createProgram();gl.attachShader(prog,sh(gl.VERTEX_SHADER,VS));gl.attachShader(prog,sh(gl.FRAGMENT_SHADER,FS));gl.linkProgram(prog);gl.useProgram(prog);
const loc={p:gl.getAttribLocation(prog,"p"),n:gl.getAttribLocation(prog,"n"),c:gl.getAttribLocation(prog,"c"),
 mvp:gl.getUniformLocation(prog,"mvp"),rot:gl.getUniformLocation(prog,"rot"),light:gl.getUniformLocation(prog,"light")};
const L=[-0.4,0.6,1.0];const ln=Math.hypot(...L);gl.uniform3f(loc.light,L[0]/ln,L[1]/ln,L[2]/ln);
const bufs={p:gl.createBuffer(),n:gl.createBuffer(),c:gl.createBuffer(),i:gl.createBuffer()};
const faces={left:u16(D.faces.left),right:u16(D.faces.right)};
let count=0,centre=[0,0,0],radius=0.1,yaw=0,pitch=0,dist=0.5;
function normals(P,F,N,off){for(let k=0;k<F.length;k+=3){const a=3*(F[k]+off),b=3*(F[k+1]+off),c=3*(F[k+2]+off);
 const ux=P[b]-P[a],uy=P[b+1]-P[a+1],uz=P[b+2]-P[a+2],vx=P[c]-P[a],vy=P[c+1]-P[a+1],vz=P[c+2]-P[a+2];
 const nx=uy*vz-uz*vy,ny=uz*vx-ux*vz,nz=ux*vy-uy*vx;for(const q of [a,b,c]){N[q]+=nx;N[q+1]+=ny;N[q+2]+=nz;}}}
function load(i){const s=D.samples[i];const parts=[];
 parts.push({v:u16(s.l),f:faces.left,m:bytes(s.li),col:D.colours.left});
 parts.push({v:u16(s.r),f:faces.right,m:bytes(s.ri),col:D.colours.right});
 if(s.o)parts.push({v:u16(s.o.v),f:u32(s.o.f),m:null,col:D.colours.object});
 let nv=0,nf=0;for(const q of parts){nv+=q.v.length/3;nf+=q.f.length;}
 const P=new Float32Array(nv*3),N=new Float32Array(nv*3),C=new Float32Array(nv*3),I=new Uint32Array(nf);
 let vo=0,fo=0;const lo=[1e9,1e9,1e9],hi=[-1e9,-1e9,-1e9];
 for(const q of parts){const n=q.v.length/3;
  for(let j=0;j<n;j++){for(let k=0;k<3;k++){const x=D.lo[k]+q.v[3*j+k]*D.step;P[3*(vo+j)+k]=x;lo[k]=Math.min(lo[k],x);hi[k]=Math.max(hi[k],x);}
   const col=(q.m&&bit(q.m,j))?D.colours.highlight:q.col;for(let k=0;k<3;k++)C[3*(vo+j)+k]=col[k]/255;}
  for(let k=0;k<q.f.length;k++)I[fo+k]=q.f[k]+vo;normals(P,q.f,N,vo);vo+=n;fo+=q.f.length;}
 centre=[0,1,2].map(k=>(lo[k]+hi[k])/2);radius=0.5*Math.hypot(hi[0]-lo[0],hi[1]-lo[1],hi[2]-lo[2]);
 for(const [b,a] of [[bufs.p,P],[bufs.n,N],[bufs.c,C]]){gl.bindBuffer(gl.ARRAY_BUFFER,b);gl.bufferData(gl.ARRAY_BUFFER,a,gl.STATIC_DRAW);}
 gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER,bufs.i);gl.bufferData(gl.ELEMENT_ARRAY_BUFFER,I,gl.STATIC_DRAW);count=I.length;
 document.getElementById("info").textContent=s.text;}
const FOV=35*Math.PI/180;
function draw(){const w=canvas.clientWidth,h=canvas.clientHeight,dpr=window.devicePixelRatio||1;
 if(canvas.width!==Math.round(w*dpr)||canvas.height!==Math.round(h*dpr)){canvas.width=Math.round(w*dpr);canvas.height=Math.round(h*dpr);}
 gl.viewport(0,0,canvas.width,canvas.height);gl.clearColor(1,1,1,1);gl.enable(gl.DEPTH_TEST);gl.clear(gl.COLOR_BUFFER_BIT|gl.DEPTH_BUFFER_BIT);
 const cy=Math.cos(yaw),sy=Math.sin(yaw),cp=Math.cos(pitch),sp=Math.sin(pitch);
 // rows: camera right, up, towards the viewer (world coordinates); the front view looks along -z.
 const R=[[cy,0,-sy],[sy*sp,cp,cy*sp],[sy*cp,-sp,cy*cp]];
 const d=dist*radius/Math.sin(FOV/2),f=1/Math.tan(FOV/2),asp=canvas.width/canvas.height,near=Math.max(d-2*radius,1e-3),far=d+2*radius;
 const t=R.map(r=>-(r[0]*centre[0]+r[1]*centre[1]+r[2]*centre[2]));t[2]-=d;
 const V=[[...R[0],t[0]],[...R[1],t[1]],[...R[2],t[2]]];
 const Pm=[[f/asp,0,0,0],[0,f,0,0],[0,0,(far+near)/(near-far),2*far*near/(near-far)],[0,0,-1,0]];
 const M=[];for(let r=0;r<4;r++)for(let c=0;c<4;c++){let s=0;for(let k=0;k<3;k++)s+=Pm[r][k]*V[k][c];if(c===3)s+=Pm[r][3];M.push(s);}
 const col=[];for(let c=0;c<4;c++)for(let r=0;r<4;r++)col.push(M[4*r+c]);
 gl.uniformMatrix4fv(loc.mvp,false,new Float32Array(col));
 gl.uniformMatrix3fv(loc.rot,false,new Float32Array([R[0][0],R[1][0],R[2][0],R[0][1],R[1][1],R[2][1],R[0][2],R[1][2],R[2][2]]));
 for(const [b,a] of [[bufs.p,loc.p],[bufs.n,loc.n],[bufs.c,loc.c]]){gl.bindBuffer(gl.ARRAY_BUFFER,b);gl.enableVertexAttribArray(a);gl.vertexAttribPointer(a,3,gl.FLOAT,false,0,0);}
 gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER,bufs.i);gl.drawElements(gl.TRIANGLES,count,gl.UNSIGNED_INT,0);}
let pending=false;function redraw(){if(!pending){pending=true;requestAnimationFrame(()=>{pending=false;draw();});}}
const slider=document.getElementById("slider"),jump=document.getElementById("jump");
slider.max=D.samples.length-1;jump.max=D.samples.length-1;document.getElementById("title").textContent=D.title;
function show(i){i=Math.max(0,Math.min(D.samples.length-1,i|0));slider.value=i;jump.value=i;load(i);redraw();}
slider.oninput=()=>show(+slider.value);jump.onchange=()=>show(+jump.value);
document.getElementById("prev").onclick=()=>show(+slider.value-1);document.getElementById("next").onclick=()=>show(+slider.value+1);
let drag=null;canvas.onpointerdown=e=>{drag=[e.clientX,e.clientY];canvas.setPointerCapture(e.pointerId);};
canvas.onpointerup=()=>{drag=null;};
canvas.onpointermove=e=>{if(!drag)return;yaw+=(e.clientX-drag[0])*0.01;pitch=Math.max(-1.5,Math.min(1.5,pitch+(e.clientY-drag[1])*0.01));drag=[e.clientX,e.clientY];redraw();};
canvas.onwheel=e=>{e.preventDefault();dist=Math.max(0.3,Math.min(10,dist*Math.exp(e.deltaY*0.001)));redraw();};
window.onresize=redraw;
window.interhandgenView={show:show,count:D.samples.length};
dist=1.1;show(0);
</script></body></html>
"""
