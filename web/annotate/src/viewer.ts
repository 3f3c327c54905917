// The viewer: one Cornerstone3D stack viewport on one instance (a cine's frames), cine playback
// in real time at the instance's own frame rate, window/level, measurement tools saved through the
// collaboration WebSocket (the server computes the physical values), brush masks per frame,
// the label panel of the project's schema, presence of the other users and their live edits.
import {
  cache,
  Enums as csEnums,
  eventTarget,
  imageLoader,
  init as csInit,
  RenderingEngine,
  type Types,
  utilities as csUtils,
} from '@cornerstonejs/core';
import {
  addTool,
  annotation as csAnnotation,
  BrushTool,
  EllipticalROITool,
  Enums as toolsEnums,
  init as toolsInit,
  LengthTool,
  PanTool,
  PlanarFreehandROITool,
  RectangleROITool,
  segmentation,
  StackScrollTool,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
} from '@cornerstonejs/tools';
import dicomImageLoader, { wadors } from '@cornerstonejs/dicom-image-loader';
import { api, dicomweb, type DicomJson, h, num, str } from './api';
import type { Me } from './main';

// ---------------------------------------------------------------------------------------------
// Types of the server's API.

type Kind = 'label' | 'length' | 'area' | 'ellipse' | 'polygon' | 'mask';

interface Schema {
  labels?: { name: string; choice: 'single' | 'multi'; scope: 'study' | 'series' | 'instance' | 'frame'; options: string[] }[];
  measurements?: { name: string; kind: 'length' | 'area' | 'ellipse' | 'polygon' }[];
  masks?: { name: string }[];
}

interface Project {
  id: number;
  name: string;
  blinded: boolean;
  schema: Schema;
  role: string;
}

interface Quantity {
  quantity: string;
  value: number;
  unit: string;
}

interface ServerAnnotation {
  id: string;
  study_instance_uid: string;
  series_instance_uid?: string | null;
  sop_instance_uid?: string | null;
  frame?: number | null;
  kind: Kind;
  name: string;
  payload: Record<string, unknown>;
  measurement?: { calibration: string; values: Quantity[] } | null;
  author: string;
  version: number;
  seq: number;
  deleted: boolean;
}

interface Instance {
  series: string;
  sop: string;
  frames: number;
  rows: number;
  columns: number;
  fps: number;
  fpsSource: string;
  meta: DicomJson;
  label: string;
}

// ---------------------------------------------------------------------------------------------
// Cornerstone set-up (once per page).

const TOOL_FOR: Record<string, string> = {
  length: LengthTool.toolName,
  area: RectangleROITool.toolName,
  ellipse: EllipticalROITool.toolName,
  polygon: PlanarFreehandROITool.toolName,
};
const MEASURE_TOOLS = Object.values(TOOL_FOR);
const TOOL_GROUP = 'bedside';
/** Segment index of the first schema mask when drawn by someone else. */
const OTHERS_SEGMENT = 100;
const VIEWPORT = 'main';
const ENGINE = 'bedside-engine';

let initialised: Promise<void> | null = null;

function initCornerstone(): Promise<void> {
  initialised ??= (async () => {
    await csInit();
    toolsInit();
    dicomImageLoader.init({ maxWebWorkers: Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) });
    for (const t of [
      WindowLevelTool,
      PanTool,
      ZoomTool,
      StackScrollTool,
      LengthTool,
      RectangleROITool,
      EllipticalROITool,
      PlanarFreehandROITool,
      BrushTool,
    ]) {
      addTool(t);
    }
  })();
  return initialised;
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/** The native frame rate of a cine: Cine Rate, else Recommended Display Frame Rate, else
 * 1000 / Frame Time, else the mean of the Frame Time Vector. */
export function frameRate(meta: DicomJson): { fps: number; source: string } {
  const cine = num(meta, '00180040');
  if (cine && cine > 0) return { fps: cine, source: 'CineRate' };
  const rec = num(meta, '00082144');
  if (rec && rec > 0) return { fps: rec, source: 'RecommendedDisplayFrameRate' };
  const ft = num(meta, '00181063');
  if (ft && ft > 0) return { fps: 1000 / ft, source: 'FrameTime' };
  const vec = (meta['00181065']?.Value ?? []).map(Number).filter((v) => v > 0);
  if (vec.length > 1) {
    const mean = vec.slice(1).reduce((a, b) => a + b, 0) / (vec.length - 1);
    if (mean > 0) return { fps: 1000 / mean, source: 'FrameTimeVector' };
  }
  return { fps: 25, source: 'default' };
}

function formatMeasurement(a: ServerAnnotation): string {
  const m = a.measurement;
  if (!m || !m.values?.length) return '';
  return m.values
    .map((q) => {
      const unit = q.unit === 'mm2' ? 'mm²' : q.unit === 'px2' ? 'px²' : q.unit;
      const digits = Math.abs(q.value) >= 100 ? 0 : Math.abs(q.value) >= 10 ? 1 : 2;
      return `${q.quantity} ${q.value.toFixed(digits)} ${unit}`;
    })
    .join(', ');
}

function debounce(fn: () => void, ms: number): () => void {
  let t: number | undefined;
  return () => {
    window.clearTimeout(t);
    t = window.setTimeout(fn, ms);
  };
}

function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

// ---------------------------------------------------------------------------------------------
// The viewer.

export async function openViewer(root: HTMLElement, me: Me, pid: number, study: string): Promise<() => void> {
  await initCornerstone();
  const project = await api<Project>('GET', `/projects/${pid}`);
  const schema: Schema = project.schema ?? {};
  const mayAnnotate = project.role === 'admin' || project.role === 'annotator';

  // Instances of the study, from QIDO (series) and WADO-RS series metadata.
  const instances: Instance[] = [];
  const series = await dicomweb(`/studies/${study}/series`);
  for (const s of series) {
    const se = str(s, '0020000E');
    const metas = await dicomweb(`/studies/${study}/series/${se}/metadata`);
    for (const m of metas) {
      if (!m['7FE00010'] && !m['00280010']) continue; // no image
      const { fps, source } = frameRate(m);
      const inst: Instance = {
        series: se,
        sop: str(m, '00080018'),
        frames: num(m, '00280008') ?? 1,
        rows: num(m, '00280010') ?? 0,
        columns: num(m, '00280011') ?? 0,
        fps,
        fpsSource: source,
        meta: m,
        label: '',
      };
      inst.label = `${str(s, '00080060') || '?'} #${str(m, '00200013') || instances.length + 1} · ${inst.frames} frames`;
      instances.push(inst);
    }
  }
  if (instances.length === 0) throw new Error('the study has no images');
  instances.sort((a, b) => b.frames - a.frames);

  // ----- layout
  const side = h('aside', { id: 'side' });
  const vpEl = h('div', { id: 'viewport' }) as HTMLDivElement;
  const playBtn = h('button', { id: 'play', title: 'Play / pause (space)' }, 'Play');
  const slider = h('input', { id: 'frame-slider', type: 'range', min: '1', max: '1', value: '1' });
  const frameText = h('span', { id: 'frame', 'data-frame': '1' }, '1 / 1');
  const fpsText = h('span', { id: 'fps', class: 'muted' });
  const status = h('span', { id: 'status' });
  const cinebar = h('div', { id: 'cinebar' }, playBtn, slider, frameText, fpsText, status);
  root.replaceChildren(side, h('section', { id: 'stage' }, vpEl, cinebar));
  vpEl.oncontextmenu = (e) => e.preventDefault();

  const select = h('select', { id: 'instance' });
  instances.forEach((inst, i) => select.append(h('option', { value: String(i) }, inst.label)));
  const toolBar = h('div', { class: 'tools', id: 'tools' });
  const measureBar = h('div', { class: 'tools', id: 'measure-tools' });
  const maskBar = h('div', { class: 'tools', id: 'mask-tools' });
  const labelPanel = h('div', { id: 'labels' });
  const annList = h('ul', { class: 'list', id: 'annotations' });
  const presenceList = h('ul', { class: 'list presence', id: 'presence' });
  side.append(
    h('a', { href: '#/' }, '← Worklist'),
    h('div', {}, h('h4', {}, project.name), select),
    h('div', {}, h('h4', {}, 'Tools'), toolBar),
  );
  if (mayAnnotate && (schema.measurements?.length ?? 0) > 0) {
    side.append(h('div', {}, h('h4', {}, 'Measurements'), measureBar));
  }
  if (mayAnnotate && (schema.masks?.length ?? 0) > 0) {
    side.append(h('div', {}, h('h4', {}, 'Segmentation (brush)'), maskBar));
  }
  side.append(
    h('div', {}, h('h4', {}, 'Labels'), labelPanel),
    h('div', {}, h('h4', {}, 'Annotations'), annList),
    h('div', {}, h('h4', {}, 'Also here'), presenceList),
    h(
      'p',
      { class: 'muted' },
      'Keys: space play/pause · ←/→ frame · Home/End first/last · W window/level · Esc navigate · Del delete selected',
    ),
  );

  // ----- Cornerstone viewport
  const engine = new RenderingEngine(ENGINE);
  engine.enableElement({ viewportId: VIEWPORT, type: csEnums.ViewportType.STACK, element: vpEl });
  const viewport = engine.getViewport(VIEWPORT) as Types.IStackViewport;
  ToolGroupManager.destroyToolGroup(TOOL_GROUP);
  const group = ToolGroupManager.createToolGroup(TOOL_GROUP);
  if (!group) throw new Error('cannot create the tool group');
  for (const t of [WindowLevelTool, PanTool, ZoomTool, StackScrollTool, ...[LengthTool, RectangleROITool, EllipticalROITool, PlanarFreehandROITool, BrushTool]]) {
    group.addTool(t.toolName);
  }
  group.addViewport(VIEWPORT, ENGINE);
  const { MouseBindings } = toolsEnums;
  group.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
  group.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
  group.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
  for (const t of MEASURE_TOOLS) group.setToolPassive(t);

  // The primary button's tool: window/level, a measurement (with its schema name) or a mask.
  let primary: { tool: string; kind?: Kind; name?: string; segment?: number } = { tool: WindowLevelTool.toolName };
  const buttons: { el: HTMLButtonElement; key: string }[] = [];
  function setPrimary(p: typeof primary, key: string) {
    if (primary.tool !== p.tool) {
      if (MEASURE_TOOLS.includes(primary.tool)) group!.setToolPassive(primary.tool);
      else group!.setToolDisabled(primary.tool);
    }
    primary = p;
    group!.setToolActive(p.tool, { bindings: [{ mouseButton: MouseBindings.Primary }] });
    if (p.segment) {
      void ensureSegmentation().then(() => segmentation.segmentIndex.setActiveSegmentIndex(segId, p.segment!));
    }
    for (const b of buttons) b.el.classList.toggle('active', b.key === key);
  }
  function toolButton(bar: HTMLElement, key: string, text: string, p: typeof primary, id: string) {
    const el = h('button', { 'data-tool': key, id }, text);
    el.onclick = () => setPrimary(p, key);
    buttons.push({ el, key });
    bar.append(el);
  }
  toolButton(toolBar, 'wl', 'Window/level', { tool: WindowLevelTool.toolName }, 'tool-wl');
  const resetBtn = h('button', { id: 'reset' }, 'Reset view');
  resetBtn.onclick = () => {
    viewport.resetCamera();
    viewport.resetProperties();
    viewport.render();
  };
  toolBar.append(resetBtn);
  (schema.measurements ?? []).forEach((m, i) =>
    toolButton(measureBar, `m:${m.name}`, `${m.name} (${m.kind})`, { tool: TOOL_FOR[m.kind], kind: m.kind, name: m.name }, `measure-${i}`),
  );
  (schema.masks ?? []).forEach((m, i) =>
    toolButton(maskBar, `k:${m.name}`, m.name, { tool: BrushTool.toolName, kind: 'mask', name: m.name, segment: i + 1 }, `mask-${i}`),
  );
  setPrimary({ tool: WindowLevelTool.toolName }, 'wl');

  // ----- state
  const anns = new Map<string, ServerAnnotation>();
  /** Payloads last sent or received per annotation, to tell a user's edit from our own echo. */
  const lastPayload = new Map<string, string>();
  const others = new Map<number, { user: string; frame?: number | null; sop?: string | null }>();
  let inst = instances[0];
  let imageIds: string[] = [];
  let segId = '';
  let segImageIds: string[] = [];
  let you = { user: me.username, conn: 0 };
  let disposed = false;

  const frameNow = () => viewport.getCurrentImageIdIndex() + 1;
  const imageIdOf = (frame: number) => imageIds[frame - 1];

  // ----- WebSocket
  let ws: WebSocket | null = null;
  let reqNo = 0;
  const pending = new Map<number, (msg: Record<string, unknown>) => void>();
  function send(msg: Record<string, unknown>): Promise<Record<string, unknown>> {
    const req = ++reqNo;
    return new Promise((resolve) => {
      pending.set(req, resolve);
      if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ ...msg, req }));
      else {
        pending.delete(req);
        resolve({ type: 'error', code: 'offline', message: 'not connected' });
      }
    });
  }
  function connect() {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/projects/${pid}/studies/${study}/ws`;
    ws = new WebSocket(url);
    ws.onopen = () => {
      status.textContent = 'connected';
      sendPresence();
    };
    ws.onclose = () => {
      status.textContent = 'disconnected';
      if (!disposed) window.setTimeout(connect, 1000);
    };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(String(ev.data)) as Record<string, unknown>;
      switch (msg.type) {
        case 'snapshot': {
          if (msg.you) you = msg.you as typeof you;
          const list = (msg.annotations as ServerAnnotation[]) ?? [];
          const seen = new Set(list.map((a) => a.id));
          for (const id of [...anns.keys()]) if (!seen.has(id)) removeLocal(id);
          for (const a of list) receive(a);
          others.clear();
          for (const p of (msg.presence as Record<string, unknown>[]) ?? []) onPresence(p);
          renderPresence();
          break;
        }
        case 'op':
          receive(msg.annotation as ServerAnnotation);
          break;
        case 'presence':
          onPresence(msg);
          renderPresence();
          break;
        case 'ack':
        case 'error':
        case 'pong': {
          const cb = pending.get(msg.req as number);
          if (cb) {
            pending.delete(msg.req as number);
            cb(msg);
          }
          if (msg.type === 'ack') receive(msg.annotation as ServerAnnotation);
          if (msg.type === 'error') {
            status.textContent = `refused: ${String(msg.message)}`;
            if (msg.current) receive(msg.current as ServerAnnotation, true);
          }
          break;
        }
      }
    };
  }

  function onPresence(p: Record<string, unknown>) {
    const conn = p.conn as number;
    if (conn === you.conn) return;
    if (p.left) others.delete(conn);
    else others.set(conn, { user: String(p.user), frame: p.frame as number | null, sop: p.sop_instance_uid as string | null });
  }
  function renderPresence() {
    presenceList.replaceChildren(
      ...[...others.values()].map((o) => {
        const where = o.sop === inst.sop && o.frame ? `frame ${o.frame}` : o.sop ? 'another image' : 'here';
        return h('li', { 'data-user': o.user }, h('span', { class: 'grow' }, o.user), h('span', { class: 'muted' }, where));
      }),
    );
    if (others.size === 0) presenceList.append(h('li', { class: 'muted' }, 'nobody else'));
  }
  let lastPresence = '';
  const sendPresence = () => {
    const frame = imageIds.length ? frameNow() : 1;
    const key = `${inst.sop}:${frame}`;
    if (key === lastPresence || ws?.readyState !== WebSocket.OPEN) return;
    lastPresence = key;
    ws.send(JSON.stringify({ type: 'presence', sop_instance_uid: inst.sop, frame }));
  };
  const presenceSoon = debounce(sendPresence, 150);

  // ----- annotations: server ⇄ Cornerstone

  function toImage(p: Types.Point3): [number, number] {
    const imageId = imageIds[viewport.getCurrentImageIdIndex()] ?? imageIds[0];
    const [x, y] = csUtils.worldToImageCoords(imageId, p) as [number, number];
    const cx = Math.min(Math.max(x, 0), inst.columns);
    const cy = Math.min(Math.max(y, 0), inst.rows);
    return [Math.round(cx * 100) / 100, Math.round(cy * 100) / 100];
  }
  function toWorld(imageId: string, p: number[]): Types.Point3 {
    return csUtils.imageToWorldCoords(imageId, [p[0], p[1]]) as Types.Point3;
  }

  /** The API payload of a drawn Cornerstone annotation. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  function payloadOf(a: any): Record<string, unknown> | null {
    const tool = a.metadata.toolName;
    const pts: Types.Point3[] = a.data?.handles?.points ?? [];
    if (tool === LengthTool.toolName && pts.length === 2) return { points: pts.map(toImage) };
    if (tool === RectangleROITool.toolName && pts.length === 4) {
      const [tl, tr, bl, br] = pts.map(toImage);
      return { points: [tl, tr, br, bl] };
    }
    if (tool === EllipticalROITool.toolName && pts.length === 4) {
      const [bottom, top, left, right] = pts.map(toImage);
      const center = [(left[0] + right[0]) / 2, (top[1] + bottom[1]) / 2];
      const radii = [Math.abs(right[0] - left[0]) / 2, Math.abs(bottom[1] - top[1]) / 2];
      return { center, radii };
    }
    if (tool === PlanarFreehandROITool.toolName) {
      const line: Types.Point3[] = a.data?.contour?.polyline ?? [];
      if (line.length < 3) return null;
      const step = Math.ceil(line.length / 2000);
      return { points: line.filter((_, i) => i % step === 0).map(toImage) };
    }
    return null;
  }

  function baseAnnotation(a: ServerAnnotation, toolName: string, imageId: string) {
    const camera = viewport.getCamera();
    return {
      annotationUID: a.id,
      highlighted: false,
      invalidated: true,
      isLocked: !(mayAnnotate && (a.author === me.username || project.role === 'admin')),
      isVisible: true,
      metadata: {
        toolName,
        referencedImageId: imageId,
        FrameOfReferenceUID: viewport.getFrameOfReferenceUID(),
        viewPlaneNormal: camera.viewPlaneNormal,
        viewUp: camera.viewUp,
      },
    };
  }
  const textBox = () => ({
    hasMoved: false,
    worldPosition: [0, 0, 0],
    worldBoundingBox: { topLeft: [0, 0, 0], topRight: [0, 0, 0], bottomLeft: [0, 0, 0], bottomRight: [0, 0, 0] },
  });

  /** Draws a server annotation in Cornerstone (when it is on the instance shown). */
  function draw(a: ServerAnnotation) {
    csAnnotation.state.removeAnnotation(a.id);
    if (a.deleted || a.sop_instance_uid !== inst.sop || !a.frame || a.kind === 'label' || a.kind === 'mask') return;
    const imageId = imageIdOf(a.frame);
    if (!imageId) return;
    const p = a.payload as { points?: number[][]; center?: number[]; radii?: number[] };
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    let ann: any;
    if (a.kind === 'length' && p.points?.length === 2) {
      ann = {
        ...baseAnnotation(a, LengthTool.toolName, imageId),
        data: { handles: { points: p.points.map((q) => toWorld(imageId, q)), activeHandleIndex: null, textBox: textBox() }, label: a.name, cachedStats: {} },
      };
    } else if (a.kind === 'ellipse' && p.center && p.radii) {
      const [cx, cy] = p.center;
      const [rx, ry] = p.radii;
      const pts = [
        [cx, cy + ry],
        [cx, cy - ry],
        [cx - rx, cy],
        [cx + rx, cy],
      ].map((q) => toWorld(imageId, q));
      ann = {
        ...baseAnnotation(a, EllipticalROITool.toolName, imageId),
        data: { handles: { points: pts, activeHandleIndex: null, textBox: textBox() }, label: a.name, cachedStats: {} },
      };
    } else if ((a.kind === 'area' || a.kind === 'polygon') && p.points && p.points.length >= 3) {
      const pts = p.points;
      const rect =
        a.kind === 'area' &&
        pts.length === 4 &&
        pts[0][1] === pts[1][1] &&
        pts[2][1] === pts[3][1] &&
        pts[0][0] === pts[3][0] &&
        pts[1][0] === pts[2][0];
      if (rect) {
        const [tl, tr, br, bl] = pts;
        ann = {
          ...baseAnnotation(a, RectangleROITool.toolName, imageId),
          data: { handles: { points: [tl, tr, bl, br].map((q) => toWorld(imageId, q)), activeHandleIndex: null, textBox: textBox() }, label: a.name, cachedStats: {} },
        };
      } else {
        ann = {
          ...baseAnnotation(a, PlanarFreehandROITool.toolName, imageId),
          data: {
            contour: { polyline: pts.map((q) => toWorld(imageId, q)), closed: true },
            handles: { points: [], activeHandleIndex: null, textBox: textBox() },
            label: a.name,
            cachedStats: {},
          },
        };
      }
    }
    if (!ann) return;
    csAnnotation.state.addAnnotation(ann, vpEl);
    if (ann.isLocked) csAnnotation.locking.setAnnotationLocked(a.id, true);
    lastPayload.set(a.id, JSON.stringify(payloadOf(ann)));
  }

  function removeLocal(id: string) {
    anns.delete(id);
    lastPayload.delete(id);
    csAnnotation.state.removeAnnotation(id);
  }

  /** A server annotation arrived (snapshot, broadcast, ack or conflict). */
  function receive(a: ServerAnnotation, force = false) {
    if (!a || a.study_instance_uid !== study) return;
    const known = anns.get(a.id);
    if (known && known.version >= a.version && !force) return;
    if (a.deleted) {
      removeLocal(a.id);
      if (a.kind === 'mask') void loadMasks();
    } else {
      anns.set(a.id, a);
      // Our own drawing already shows the shape; redraw only what changed elsewhere.
      const drawn = csAnnotation.state.getAnnotation(a.id);
      const same = drawn && JSON.stringify(payloadOf(drawn)) === JSON.stringify(a.payload);
      if (!same) draw(a);
      if (drawn) {
        // eslint-disable-next-line @typescript-eslint/no-explicit-any
        (drawn as any).data.label = `${a.name}: ${formatMeasurement(a)}`;
      }
      if (a.kind === 'mask' && a.author !== me.username) void loadMasks();
    }
    renderList();
    renderLabels();
    viewport.render();
  }

  function renderList() {
    const items = [...anns.values()]
      .filter((a) => a.kind !== 'label')
      .sort((x, y) => (x.frame ?? 0) - (y.frame ?? 0) || x.seq - y.seq);
    annList.replaceChildren(
      ...items.map((a) => {
        const mine = a.author === me.username;
        const go = h('button', { title: 'Show this frame' }, a.sop_instance_uid === inst.sop ? `f${a.frame}` : '…');
        go.onclick = () => {
          const i = instances.findIndex((x) => x.sop === a.sop_instance_uid);
          if (i >= 0 && instances[i] !== inst) void showInstance(i, a.frame ?? 1);
          else if (a.frame) void jump(a.frame);
        };
        const li = h(
          'li',
          { class: mine ? 'mine' : 'other', 'data-id': a.id, 'data-kind': a.kind, 'data-author': a.author },
          go,
          h('span', { class: 'grow' }, `${a.name}: `, h('span', { class: 'value' }, formatMeasurement(a)), h('span', { class: 'muted' }, ` ${a.author} v${a.version}`)),
        );
        if (mayAnnotate && (mine || project.role === 'admin')) {
          const del = h('button', { title: 'Delete', class: 'delete' }, '✕');
          del.onclick = () => void send({ type: 'delete', id: a.id, version: a.version });
          li.append(del);
        }
        return li;
      }),
    );
  }

  // ----- labels
  function labelLocation(scope: string): Record<string, unknown> {
    if (scope === 'study') return {};
    if (scope === 'series') return { series_instance_uid: inst.series };
    if (scope === 'instance') return { series_instance_uid: inst.series, sop_instance_uid: inst.sop };
    return { series_instance_uid: inst.series, sop_instance_uid: inst.sop, frame: frameNow() };
  }
  function sameLocation(a: ServerAnnotation, loc: Record<string, unknown>) {
    return (
      (a.series_instance_uid ?? undefined) === loc.series_instance_uid &&
      (a.sop_instance_uid ?? undefined) === loc.sop_instance_uid &&
      (a.frame ?? undefined) === loc.frame
    );
  }
  function renderLabels() {
    labelPanel.replaceChildren();
    for (const def of schema.labels ?? []) {
      const loc = labelLocation(def.scope);
      const here = [...anns.values()].filter((a) => a.kind === 'label' && a.name === def.name && sameLocation(a, loc));
      const mine = here.find((a) => a.author === me.username);
      const values = new Set(((mine?.payload.values as string[]) ?? []));
      const opts = h('div', { class: 'opts' });
      for (const o of def.options) {
        const b = h('button', { 'data-label': def.name, 'data-option': o, class: values.has(o) ? 'active' : '' }, o);
        if (!mayAnnotate) b.setAttribute('disabled', '');
        b.onclick = () => {
          let next: string[];
          if (def.choice === 'single') next = [o];
          else {
            const s = new Set(values);
            if (s.has(o)) s.delete(o);
            else s.add(o);
            next = [...s];
          }
          if (mine && next.length === 0) void send({ type: 'delete', id: mine.id, version: mine.version });
          else if (mine) void send({ type: 'update', id: mine.id, version: mine.version, payload: { values: next } });
          else void send({ type: 'create', annotation: { ...loc, kind: 'label', name: def.name, payload: { values: next } } });
        };
        opts.append(b);
      }
      const theirs = here
        .filter((a) => a.author !== me.username)
        .map((a) => `${a.author}: ${(a.payload.values as string[]).join(', ')}`);
      labelPanel.append(
        h(
          'div',
          { class: 'label-def' },
          h('span', {}, `${def.name} `, h('span', { class: 'muted' }, `(${def.scope}${def.scope === 'frame' ? ' ' + frameNow() : ''}, ${def.choice})`)),
          opts,
          ...(theirs.length ? [h('span', { class: 'muted others' }, theirs.join('; '))] : []),
        ),
      );
    }
    if ((schema.labels ?? []).length === 0) labelPanel.append(h('span', { class: 'muted' }, 'no labels in this project'));
  }

  // ----- Cornerstone events → operations
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const onCompleted = (evt: any) => {
    const a = evt.detail.annotation;
    if (!a || a.metadata?.referencedImageId === undefined || !imageIds.includes(a.metadata.referencedImageId)) return;
    if (anns.has(a.annotationUID)) return;
    const kind = primary.kind;
    if (!kind || kind === 'mask' || TOOL_FOR[kind] !== a.metadata.toolName || !primary.name) {
      csAnnotation.state.removeAnnotation(a.annotationUID);
      return;
    }
    const payload = payloadOf(a);
    if (!payload) {
      csAnnotation.state.removeAnnotation(a.annotationUID);
      return;
    }
    a.data.label = primary.name;
    lastPayload.set(a.annotationUID, JSON.stringify(payload));
    const frame = imageIds.indexOf(a.metadata.referencedImageId) + 1;
    void send({
      type: 'create',
      annotation: {
        id: a.annotationUID,
        series_instance_uid: inst.series,
        sop_instance_uid: inst.sop,
        frame,
        kind,
        name: primary.name,
        payload,
      },
    }).then((r) => {
      if (r.type === 'error') csAnnotation.state.removeAnnotation(a.annotationUID);
    });
  };
  const modifiedTimers = new Map<string, number>();
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const onModified = (evt: any) => {
    const a = evt.detail.annotation;
    const id = a?.annotationUID;
    if (!id || !anns.has(id)) return;
    window.clearTimeout(modifiedTimers.get(id));
    modifiedTimers.set(
      id,
      window.setTimeout(() => {
        const server = anns.get(id);
        const payload = payloadOf(a);
        if (!server || !payload) return;
        const text = JSON.stringify(payload);
        if (text === lastPayload.get(id) || text === JSON.stringify(server.payload)) return;
        lastPayload.set(id, text);
        void send({ type: 'update', id, version: server.version, payload });
      }, 300),
    );
  };
  eventTarget.addEventListener(toolsEnums.Events.ANNOTATION_COMPLETED, onCompleted);
  eventTarget.addEventListener(toolsEnums.Events.ANNOTATION_MODIFIED, onModified);

  // ----- masks (brush): one labelmap per instance, segment i+1 = the schema's i-th mask
  let suppressMaskSave = false;
  const dirtyFrames = new Set<number>();
  /** The last saved or loaded pixels (base64) of our own masks, by `name:frame`: unchanged
   * masks are not sent again (a render can report the labelmap modified without an edit). */
  const savedMasks = new Map<string, string>();
  // The labelmap is added only when the instance has masks or the brush is picked: with it every
  // render costs several times more on a software (SwiftShader) WebGL.
  function dropSegmentation() {
    if (!segId) return;
    segmentation.removeSegmentationRepresentations(VIEWPORT, { segmentationId: segId });
    segmentation.removeSegmentation(segId);
    segId = '';
    segImageIds = [];
  }
  async function ensureSegmentation() {
    if (segId === `seg-${inst.sop}`) return;
    dropSegmentation();
    savedMasks.clear();
    segId = `seg-${inst.sop}`;
    const images = imageLoader.createAndCacheDerivedLabelmapImages(imageIds);
    segImageIds = images.map((i) => i.imageId);
    segmentation.addSegmentations([
      {
        segmentationId: segId,
        representation: { type: toolsEnums.SegmentationRepresentations.Labelmap, data: { imageIds: segImageIds } },
      },
    ]);
    await segmentation.addLabelmapRepresentationToViewport(VIEWPORT, [{ segmentationId: segId }]);
    if (primary.segment) segmentation.segmentIndex.setActiveSegmentIndex(segId, primary.segment);
  }
  function maskBytes(frame: number): Uint8Array | null {
    const img = cache.getImage(segImageIds[frame - 1]);
    if (!img) return null;
    return img.voxelManager ? (img.voxelManager.getScalarData() as Uint8Array) : (img.getPixelData() as Uint8Array);
  }
  async function loadMasks() {
    const has = [...anns.values()].some((a) => a.kind === 'mask' && a.sop_instance_uid === inst.sop && !a.deleted);
    if (!has && !segId) return;
    await ensureSegmentation();
    suppressMaskSave = true;
    segImageIds.forEach((_, i) => maskBytes(i + 1)?.fill(0));
    const masks = [...anns.values()].filter((a) => a.kind === 'mask' && a.sop_instance_uid === inst.sop && a.frame);
    for (const a of masks) {
      const index = (schema.masks ?? []).findIndex((m) => m.name === a.name);
      // Others' masks are shown with segments of their own, so saving ours never takes them in.
      const seg = index < 0 ? 0 : a.author === me.username ? index + 1 : OTHERS_SEGMENT + index;
      const r = await fetch(`/api/projects/${pid}/studies/${study}/annotations/${a.id}/mask`, { credentials: 'same-origin' });
      if (!r.ok || seg === 0) continue;
      const bytes = new Uint8Array(await r.arrayBuffer());
      const target = maskBytes(a.frame!);
      if (!target || target.length !== bytes.length) continue;
      if (a.author === me.username) savedMasks.set(`${a.name}:${a.frame}`, toBase64(bytes.map((v) => (v ? 1 : 0))));
      for (let i = 0; i < bytes.length; i++) if (bytes[i]) target[i] = seg;
    }
    segmentation.triggerSegmentationEvents.triggerSegmentationDataModified(segId);
    viewport.render();
    window.setTimeout(() => (suppressMaskSave = false), 0);
  }
  // A stroke is saved once the button is up (a slow renderer can stretch a stroke over seconds).
  let strokeOpen = false;
  const onDown = () => (strokeOpen = true);
  const onUp = () => {
    if (!strokeOpen) return;
    strokeOpen = false;
    if (dirtyFrames.size) saveMasks();
  };
  vpEl.addEventListener('mousedown', onDown);
  window.addEventListener('mouseup', onUp);
  const saveMasks = debounce(async () => {
    if (strokeOpen) return;
    const frames = [...dirtyFrames];
    dirtyFrames.clear();
    for (const frame of frames) {
      const data = maskBytes(frame);
      if (!data) continue;
      for (const [i, def] of (schema.masks ?? []).entries()) {
        const bin = new Uint8Array(data.length);
        let set = 0;
        for (let k = 0; k < data.length; k++) if (data[k] === i + 1) (bin[k] = 1), set++;
        const existing = [...anns.values()].find(
          (a) => a.kind === 'mask' && a.name === def.name && a.sop_instance_uid === inst.sop && a.frame === frame && a.author === me.username,
        );
        const data64 = toBase64(bin);
        const key = `${def.name}:${frame}`;
        if (savedMasks.get(key) === data64 || (!existing && set === 0)) continue;
        savedMasks.set(key, data64);
        const payload = { rows: inst.rows, columns: inst.columns, data: data64 };
        if (existing && set === 0) await send({ type: 'delete', id: existing.id, version: existing.version });
        else if (existing) await send({ type: 'update', id: existing.id, version: existing.version, payload });
        else if (set > 0) {
          await send({
            type: 'create',
            annotation: { series_instance_uid: inst.series, sop_instance_uid: inst.sop, frame, kind: 'mask', name: def.name, payload },
          });
        }
      }
    }
  }, 500);
  const onSegModified = () => {
    if (suppressMaskSave || !mayAnnotate || primary.tool !== BrushTool.toolName) return;
    dirtyFrames.add(frameNow());
    saveMasks();
  };
  eventTarget.addEventListener(toolsEnums.Events.SEGMENTATION_DATA_MODIFIED, onSegModified);

  // ----- cine and frames
  // The frame shown follows the clock (frame = start + elapsed × rate), so the loop plays in
  // real time at the native rate; a slow renderer drops frames rather than slowing down.
  // (Cornerstone's playClip waits for each render and fell to a few frames/s here.)
  let playing = false;
  let cineStart = 0;
  let cineFrom = 0;
  let cineRaf = 0;
  let cineBusy = false;
  function cineTick() {
    if (!playing) return;
    const elapsed = (performance.now() - cineStart) / 1000;
    const target = (cineFrom + Math.floor(elapsed * inst.fps)) % imageIds.length;
    if (!cineBusy && target !== viewport.getCurrentImageIdIndex()) {
      cineBusy = true;
      viewport
        .setImageIdIndex(target)
        .catch(() => undefined)
        .finally(() => (cineBusy = false));
    }
    cineRaf = requestAnimationFrame(cineTick);
  }
  function setPlaying(on: boolean) {
    if (on === playing) return;
    playing = on;
    if (on) {
      cineStart = performance.now();
      cineFrom = viewport.getCurrentImageIdIndex();
      cineRaf = requestAnimationFrame(cineTick);
    } else cancelAnimationFrame(cineRaf);
    playBtn.textContent = on ? 'Pause' : 'Play';
    vpEl.dataset.playing = on ? '1' : '0';
  }
  async function jump(frame: number) {
    setPlaying(false);
    const f = Math.min(Math.max(frame, 1), imageIds.length);
    await viewport.setImageIdIndex(f - 1);
  }
  playBtn.onclick = () => setPlaying(!playing);
  slider.oninput = () => void jump(Number(slider.value));
  let framesShown = 0;
  /** (time in ms, frame index) of each frame shown while playing, the last 2,000. */
  const cineLog: [number, number][] = [];
  const onNewImage = () => {
    const f = frameNow();
    framesShown++;
    if (playing) {
      cineLog.push([performance.now(), f - 1]);
      if (cineLog.length > 2000) cineLog.shift();
    }
    frameText.textContent = `${f} / ${imageIds.length}`;
    frameText.dataset.frame = String(f);
    frameText.dataset.shown = String(framesShown);
    slider.value = String(f);
    if ((schema.labels ?? []).some((l) => l.scope === 'frame')) renderLabels();
    presenceSoon();
  };
  vpEl.addEventListener(csEnums.Events.STACK_NEW_IMAGE, onNewImage);

  async function showInstance(i: number, frame = 1) {
    setPlaying(false);
    inst = instances[i];
    select.value = String(i);
    const base = `${location.origin}/dicomweb/studies/${study}/series/${inst.series}/instances/${inst.sop}/frames/`;
    imageIds = Array.from({ length: inst.frames }, (_, k) => `wadors:${base}${k + 1}`);
    wadors.metaDataManager.add(imageIds[0], inst.meta as never);
    slider.max = String(inst.frames);
    fpsText.textContent = `${inst.fps.toFixed(1)} fps (${inst.fpsSource})`;
    fpsText.dataset.fps = String(inst.fps);
    csAnnotation.state.removeAllAnnotations();
    await viewport.setStack(imageIds, frame - 1);
    viewport.render();
    // Fetch every frame up front so the cine plays at its own rate.
    for (const id of imageIds) void imageLoader.loadAndCacheImage(id).catch(() => undefined);
    dropSegmentation();
    if (primary.segment) await ensureSegmentation();
    for (const a of anns.values()) draw(a);
    await loadMasks();
    renderList();
    renderLabels();
    renderPresence();
    onNewImage();
  }
  select.onchange = () => void showInstance(Number(select.value));

  // ----- keyboard
  const onKey = (e: KeyboardEvent) => {
    const t = e.target as HTMLElement;
    if (t && (t.tagName === 'INPUT' && (t as HTMLInputElement).type !== 'range' || t.tagName === 'SELECT' || t.tagName === 'TEXTAREA')) return;
    if (e.key === ' ') {
      e.preventDefault();
      // A focused button would also take the space as a click when the key comes up.
      if (t?.tagName === 'BUTTON') t.blur();
      setPlaying(!playing);
    } else if (e.key === 'ArrowRight' || e.key === 'ArrowDown') {
      e.preventDefault();
      void jump(frameNow() + 1);
    } else if (e.key === 'ArrowLeft' || e.key === 'ArrowUp') {
      e.preventDefault();
      void jump(frameNow() - 1);
    } else if (e.key === 'Home') void jump(1);
    else if (e.key === 'End') void jump(imageIds.length);
    else if (e.key === 'w' || e.key === 'W' || e.key === 'Escape') setPrimary({ tool: WindowLevelTool.toolName }, 'wl');
    else if (e.key === 'Delete' || e.key === 'Backspace') {
      const sel = csAnnotation.selection.getAnnotationsSelected() ?? [];
      for (const uid of sel) {
        const a = anns.get(uid);
        if (a) void send({ type: 'delete', id: a.id, version: a.version });
      }
    } else if (/^[1-9]$/.test(e.key)) {
      const b = [...measureBar.querySelectorAll('button'), ...maskBar.querySelectorAll('button')][Number(e.key) - 1];
      (b as HTMLButtonElement | undefined)?.click();
    }
  };
  window.addEventListener('keydown', onKey);

  const onResize = () => engine.resize(true, true);
  window.addEventListener('resize', onResize);

  await showInstance(0);
  connect();

  // Introspection for end-to-end tests and debugging.
  (window as unknown as Record<string, unknown>).bedsideViewer = {
    frame: frameNow,
    playing: () => playing,
    fps: () => inst.fps,
    voi: () => viewport.getProperties().voiRange,
    cineLog: () => cineLog.slice(),
    instance: () => ({ sop: inst.sop, frames: inst.frames, rows: inst.rows, columns: inst.columns }),
    annotations: () => [...anns.values()],
    others: () => [...others.values()],
    imageToCanvas: (x: number, y: number) => viewport.worldToCanvas(toWorld(imageIds[viewport.getCurrentImageIdIndex()], [x, y])),
  };

  return () => {
    disposed = true;
    setPlaying(false);
    ws?.close();
    eventTarget.removeEventListener(toolsEnums.Events.ANNOTATION_COMPLETED, onCompleted);
    eventTarget.removeEventListener(toolsEnums.Events.ANNOTATION_MODIFIED, onModified);
    eventTarget.removeEventListener(toolsEnums.Events.SEGMENTATION_DATA_MODIFIED, onSegModified);
    window.removeEventListener('keydown', onKey);
    window.removeEventListener('mouseup', onUp);
    window.removeEventListener('resize', onResize);
    csAnnotation.state.removeAllAnnotations();
    dropSegmentation();
    ToolGroupManager.destroyToolGroup(TOOL_GROUP);
    engine.destroy();
  };
}
