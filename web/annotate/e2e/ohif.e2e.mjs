// The prebuilt OHIF viewer (npm @ohif/app, its dist folder) pointed at `bedside annotate serve`'s
// DICOMweb, in headless Chromium. A small server here serves OHIF's files with our own
// app-config.js and forwards /dicomweb and /api to the annotate server, so OHIF and DICOMweb
// share an origin and the browser's session cookie authorises OHIF's requests: the server's
// role checks apply to OHIF exactly as to any client (no CORS, no token in the page).
//
// Environment: BASE (annotate server), OHIF_DIST, CHROMIUM, STUDY (a cine's study), ACCESSIONS
// (JSON list: the accession numbers of the studies the user may see), FRAMES (the cine's frame count), USER, PASSWORD, OUT_DIR.
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing ${k}`);
  return v;
};
const BASE = new URL(env('BASE'));
const DIST = env('OHIF_DIST');
const STUDY = env('STUDY');
const t0 = Date.now();
const log = (...a) => console.error(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
const check = (c, m) => {
  if (!c) throw new Error(`check failed: ${m}`);
};

const CONFIG = `window.config = {
  routerBasename: '/',
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  defaultDataSourceName: 'bedside',
  dataSources: [{
    namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
    sourceName: 'bedside',
    configuration: {
      friendlyName: 'Bedside annotate',
      name: 'bedside',
      wadoUriRoot: window.location.origin + '/dicomweb',
      qidoRoot: window.location.origin + '/dicomweb',
      wadoRoot: window.location.origin + '/dicomweb',
      qidoSupportsIncludeField: true,
      imageRendering: 'wadors',
      thumbnailRendering: 'wadors',
      enableStudyLazyLoad: true,
      supportsFuzzyMatching: false,
      supportsWildcard: false,
      staticWado: false,
      singlepart: 'bulkdata,video',
      bulkDataURI: { enabled: true, relativeResolution: 'studies' },
      omitQuotationForMultipartRequest: true,
    },
  }],
};
`;

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm',
  '.json': 'application/json', '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.woff2': 'font/woff2' };
const stats = { frame_requests: 0, frame_errors: 0, qido_studies: 0, other_errors: [] };

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname.startsWith('/dicomweb/') || url.pathname.startsWith('/api/')) {
    const isFrame = url.pathname.includes('/frames/');
    if (isFrame) stats.frame_requests++;
    if (url.pathname === '/dicomweb/studies') stats.qido_studies++;
    const headers = { ...req.headers, host: BASE.host };
    delete headers.origin;
    const up = http.request({ host: BASE.hostname, port: BASE.port, method: req.method, path: req.url, headers }, (r) => {
      if (r.statusCode >= 400) {
        if (isFrame) stats.frame_errors++;
        else stats.other_errors.push(`${r.statusCode} ${req.method} ${req.url}`);
      }
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    up.on('error', (e) => {
      res.writeHead(502);
      res.end(String(e));
    });
    req.pipe(up);
    return;
  }
  if (url.pathname === '/app-config.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(CONFIG);
    return;
  }
  let file = path.join(DIST, path.normalize(decodeURIComponent(url.pathname)).replace(/^(\.\.[/\\])+/, ''));
  if (!file.startsWith(DIST) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
    file = path.join(DIST, 'index.html'); // OHIF routes itself (/viewer?StudyInstanceUIDs=…)
  }
  res.writeHead(200, { 'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream' });
  fs.createReadStream(file).pipe(res);
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const ORIGIN = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const result = {};
try {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  if (process.env.DEBUG) page.on('console', (m) => console.error('console', m.type(), m.text().slice(0, 300)));
  // Sign in through the same origin: the session cookie then rides on OHIF's own requests.
  const login = await page.request.post(`${ORIGIN}/api/login`, { data: { username: env('USER'), password: env('PASSWORD') } });
  check(login.ok(), `login ${login.status()}`);

  // ---- the study list
  await page.goto(`${ORIGIN}/`);
  // Every study the user may read is a row, found by its accession number.
  const accessions = JSON.parse(env('ACCESSIONS'));
  await page.waitForFunction((acc) => acc.every((a) => document.body.innerText.includes(a)), accessions, { timeout: 90000 });
  result.study_rows = await page.evaluate((acc) =>
    [...document.querySelectorAll('tr')].filter((tr) => acc.some((a) => tr.innerText.includes(a))).length, accessions);
  result.qido_studies = stats.qido_studies;
  log('study list rows', result.study_rows);
  if (process.env.OUT_DIR) await page.screenshot({ path: `${process.env.OUT_DIR}/ohif-list.png` });

  // ---- the viewer on the cine
  await page.goto(`${ORIGIN}/viewer?StudyInstanceUIDs=${STUDY}`);
  await page.waitForFunction(() => {
    const cs = window.cornerstone;
    const vp = cs?.getRenderingEngines?.()[0]?.getViewports?.()[0];
    return vp && vp.getImageIds?.().length > 1 && vp.getCurrentImageIdIndex() >= 0 && document.querySelector('canvas');
  }, null, { timeout: 120000 });
  result.image_ids = await page.evaluate(() => window.cornerstone.getRenderingEngines()[0].getViewports()[0].getImageIds().length);
  check(result.image_ids === Number(env('FRAMES')), `OHIF stacks ${result.image_ids} frames, the cine has ${env('FRAMES')}`);
  // Play it as OHIF's cine button does (its cine service drives Cornerstone's playClip) and
  // watch the frame index move.
  result.frames_seen = await page.evaluate(async () => {
    const vp = window.cornerstone.getRenderingEngines()[0].getViewports()[0];
    const cine = window.services.cineService;
    cine.setIsCineEnabled(true);
    cine.setCine({ id: vp.id, isPlaying: true, frameRate: 10 });
    const seen = new Set();
    for (let i = 0; i < 50; i++) {
      seen.add(vp.getCurrentImageIdIndex());
      await new Promise((r) => setTimeout(r, 100));
    }
    cine.setCine({ id: vp.id, isPlaying: false });
    return seen.size;
  });
  log('frames seen while playing', result.frames_seen, 'frame requests', stats.frame_requests);
  if (process.env.OUT_DIR) await page.screenshot({ path: `${process.env.OUT_DIR}/ohif-viewer.png` });
  Object.assign(result, stats);
  result.page_errors = errors;
  result.seconds = (Date.now() - t0) / 1000;
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
  server.close();
}
