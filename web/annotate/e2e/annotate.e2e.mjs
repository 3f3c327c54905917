// End-to-end check of the annotate web interface in headless Chromium (Playwright, the system's
// chromium). Driven by tests/python/test_annotate_web.py, which starts the server and prepares
// users, a project and studies; this script drives two browser contexts (an admin and an
// annotator) and prints a JSON summary that the Python side checks against the API.
//
// Environment: BASE (server root), CHROMIUM (executable), STUDY (the study to open), FPS (the
// study's native frame rate), ADMIN/ADMIN_PASSWORD, ANNOTATOR/ANNOTATOR_PASSWORD, STUDIES (count
// in the annotator's worklist), OUT_DIR (screenshots).
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`missing ${k}`);
  return v;
};
const BASE = env('BASE');
const STUDY = env('STUDY');
const FPS = Number(env('FPS'));
const OUT_DIR = process.env.OUT_DIR;
const t0 = Date.now();
const log = (...a) => console.error(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);

function check(cond, msg) {
  if (!cond) throw new Error(`check failed: ${msg}`);
}

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--use-angle=swiftshader', '--enable-unsafe-swiftshader',
    '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
});
const result = {};
try {
  async function login(user, password) {
    const ctx = await browser.newContext({ viewport: { width: 1100, height: 720 } });
    const page = await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    // The 401s of /api/me before signing in and of the deliberate wrong password are expected.
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 401/.test(m.text())) errors.push(m.text());
    });
    await page.goto(BASE + '/');
    await page.waitForSelector('#login');
    await page.fill('#username', user);
    await page.fill('#password', 'wrong-' + password);
    await page.click('#login button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#login-error')?.textContent);
    await page.fill('#password', password);
    await page.click('#login button[type=submit]');
    await page.waitForSelector('#worklist tr.study');
    return { ctx, page, errors };
  }
  async function openStudy(page) {
    await page.click(`#worklist tr.study[data-study="${STUDY}"]`);
    await page.waitForFunction(() => window.bedsideViewer && document.querySelector('#status')?.textContent === 'connected', null, { timeout: 60000 });
    // The first frame is on screen.
    await page.waitForFunction(() => Number(document.querySelector('#frame')?.dataset.shown ?? 0) >= 1, null, { timeout: 60000 });
  }
  const viewer = (page, expr) => page.evaluate(`window.bedsideViewer.${expr}`);

  // ---- admin: login (a wrong password first), worklist, viewer
  const A = await login(env('ADMIN'), env('ADMIN_PASSWORD'));
  result.admin_worklist_rows = await A.page.locator('#worklist tr.study').count();
  log('admin worklist', result.admin_worklist_rows);
  const B = await login(env('ANNOTATOR'), env('ANNOTATOR_PASSWORD'));
  result.annotator_worklist_rows = await B.page.locator('#worklist tr.study').count();
  check(result.annotator_worklist_rows === Number(env('STUDIES')), `annotator sees ${result.annotator_worklist_rows} studies`);
  await openStudy(A.page);
  await openStudy(B.page);
  log('viewers open');
  const inst = await viewer(A.page, 'instance()');
  result.instance = inst;
  result.fps_shown = await viewer(A.page, 'fps()');
  check(Math.abs(result.fps_shown - FPS) < 0.01, `frame rate ${result.fps_shown} vs ${FPS}`);

  // ---- cine: space plays, in real time at the native rate, space pauses, arrows step.
  // The player shows the frame the clock calls for (dropping frames when rendering is slower,
  // as with SwiftShader on a busy machine), so the clip must advance at the native rate
  // whatever the number of frames drawn: unwrapped index advance / wall-clock time ≈ FPS.
  // Let every frame load first so the measured rate is the player's, not the network's.
  await A.page.waitForTimeout(1500);
  await A.page.click('#viewport');
  await A.page.keyboard.press('Space');
  await A.page.waitForTimeout(2500);
  check(await viewer(A.page, 'playing()'), 'playing after space');
  await A.page.keyboard.press('Space');
  const cine = await viewer(A.page, 'cineLog()');
  check(cine.length >= 5, `only ${cine.length} frames drawn in 2.5 s of play`);
  let advance = 0;
  for (let i = 1; i < cine.length; i++) advance += (cine[i][1] - cine[i - 1][1] + inst.frames) % inst.frames;
  const span = (cine[cine.length - 1][0] - cine[0][0]) / 1000;
  result.cine_clip_rate = advance / span;
  result.cine_drawn_per_s = (cine.length - 1) / span;
  log('cine clip rate', result.cine_clip_rate.toFixed(1), 'frames/s, native', FPS, '; drawn', result.cine_drawn_per_s.toFixed(1), '/s');
  check(Math.abs(result.cine_clip_rate - FPS) < 0.15 * FPS, `the clip advances at ${result.cine_clip_rate} frames/s, native ${FPS}`);
  check(!(await viewer(A.page, 'playing()')), 'paused after the second space');
  const fPaused = await viewer(A.page, 'frame()');
  await A.page.waitForTimeout(300);
  check((await viewer(A.page, 'frame()')) === fPaused, 'frame holds while paused');
  await A.page.keyboard.press('Home');
  await A.page.keyboard.press('ArrowRight');
  await A.page.keyboard.press('ArrowRight');
  await A.page.waitForFunction(() => window.bedsideViewer.frame() === 3);
  result.frame = 3;

  // ---- window/level: a drag with the default tool changes the VOI
  const box = await A.page.locator('#viewport canvas').first().boundingBox();
  const voi0 = await viewer(A.page, 'voi()');
  await A.page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await A.page.mouse.down();
  await A.page.mouse.move(box.x + box.width / 2 + 60, box.y + box.height / 2 + 30, { steps: 6 });
  await A.page.mouse.up();
  const voi1 = await viewer(A.page, 'voi()');
  check(JSON.stringify(voi0) !== JSON.stringify(voi1), `window/level changed (${JSON.stringify(voi0)} → ${JSON.stringify(voi1)})`);

  // ---- presence: each sees the other
  await A.page.waitForSelector(`#presence li[data-user="${env('ANNOTATOR')}"]`);
  await B.page.waitForSelector(`#presence li[data-user="${env('ADMIN')}"]`);
  result.presence = await B.page.textContent(`#presence li[data-user="${env('ADMIN')}"]`);
  log('presence', result.presence);

  // ---- a length measurement on frame 3, drawn with the mouse
  await A.page.click('#measure-0');
  const p1 = [inst.columns * 0.4, inst.rows * 0.5];
  const p2 = [inst.columns * 0.6, inst.rows * 0.65];
  const c1 = await viewer(A.page, `imageToCanvas(${p1[0]}, ${p1[1]})`);
  const c2 = await viewer(A.page, `imageToCanvas(${p2[0]}, ${p2[1]})`);
  await A.page.mouse.move(box.x + c1[0], box.y + c1[1]);
  await A.page.mouse.down();
  await A.page.mouse.move(box.x + c2[0], box.y + c2[1], { steps: 8 });
  await A.page.mouse.up();
  await A.page.waitForSelector('#annotations li[data-kind="length"] .value:has-text("mm")', { timeout: 15000 });
  result.length_text = await A.page.textContent('#annotations li[data-kind="length"] .value');
  result.length_id = await A.page.getAttribute('#annotations li[data-kind="length"]', 'data-id');
  log('length', result.length_text);
  // The annotator sees it live, with the server's value.
  await B.page.waitForSelector(`#annotations li[data-kind="length"][data-author="${env('ADMIN')}"] .value:has-text("mm")`, { timeout: 15000 });
  result.length_text_seen_by_annotator = await B.page.textContent('#annotations li[data-kind="length"] .value');

  // ---- a label from the schema (single choice, series scope)
  await A.page.keyboard.press('Escape');
  await A.page.click('#labels button[data-label="view"][data-option="A4C"]');
  await A.page.waitForSelector('#labels button[data-label="view"][data-option="A4C"].active');
  await B.page.waitForSelector('#labels .others:has-text("A4C")');
  result.label_seen_by_annotator = await B.page.textContent('#labels .others');
  // Changing it is an update (version 2), not a second label.
  await A.page.click('#labels button[data-label="view"][data-option="PLAX"]');
  await B.page.waitForSelector('#labels .others:has-text("PLAX")');

  // ---- the annotator paints a mask with the brush on frame 3
  await B.page.keyboard.press('Home');
  await B.page.keyboard.press('ArrowRight');
  await B.page.keyboard.press('ArrowRight');
  await B.page.waitForFunction(() => window.bedsideViewer.frame() === 3);
  await B.page.click('#mask-0');
  const boxB = await B.page.locator('#viewport canvas').first().boundingBox();
  const m1 = await viewer(B.page, `imageToCanvas(${inst.columns * 0.45}, ${inst.rows * 0.55})`);
  const m2 = await viewer(B.page, `imageToCanvas(${inst.columns * 0.55}, ${inst.rows * 0.6})`);
  await B.page.mouse.move(boxB.x + m1[0], boxB.y + m1[1]);
  await B.page.mouse.down();
  await B.page.mouse.move(boxB.x + m2[0], boxB.y + m2[1], { steps: 10 });
  await B.page.mouse.up();
  await B.page.waitForFunction(() => window.bedsideViewer.annotations().some((a) => a.kind === 'mask' && a.frame === 3), null, { timeout: 15000 });
  await A.page.waitForSelector(`#annotations li[data-kind="mask"][data-author="${env('ANNOTATOR')}"]`, { timeout: 15000 });
  result.mask_seen_by_admin = await A.page.textContent('#annotations li[data-kind="mask"] .value');
  log('mask', result.mask_seen_by_admin);

  // ---- the other measurement tools on frame 3, drawn with the mouse: a freehand polygon
  // (a closed square loop), an ellipse (pressed at its centre, dragged to a corner of its box)
  // and a rectangle area (corner to corner). Each is saved with the server's value in mm².
  // Each starts clear of the text boxes already drawn, where a press would move a box.
  await A.page.keyboard.press('Escape');
  const drag = async (page, bx, pts, steps = 8) => {
    const c = [];
    for (const [x, y] of pts) c.push(await viewer(page, `imageToCanvas(${x}, ${y})`));
    await page.mouse.move(bx.x + c[0][0], bx.y + c[0][1]);
    await page.mouse.down();
    for (const p of c.slice(1)) await page.mouse.move(bx.x + p[0], bx.y + p[1], { steps });
    await page.mouse.up();
  };
  const C = inst.columns, R = inst.rows;
  const shapes = [
    ['polygon', '#measure-1', [[0.35 * C, 0.35 * R], [0.45 * C, 0.35 * R], [0.45 * C, 0.45 * R],
      [0.35 * C, 0.45 * R], [0.35 * C, 0.355 * R]]],
    ['ellipse', '#measure-2', [[0.3 * C, 0.6 * R], [0.35 * C, 0.64 * R]]],
    ['area', '#measure-3', [[0.5 * C, 0.52 * R], [0.62 * C, 0.6 * R]]],
  ];
  result.shapes = {};
  for (const [kind, button, pts] of shapes) {
    await A.page.click(button);
    await drag(A.page, box, pts);
    const item = `#annotations li[data-kind="${kind}"]`;
    await A.page.waitForSelector(`${item} .value:has-text("mm")`, { timeout: 15000 });
    result.shapes[kind] = {
      id: await A.page.getAttribute(item, 'data-id'),
      text: await A.page.textContent(`${item} .value`),
    };
    await B.page.waitForSelector(`#annotations li[data-kind="${kind}"][data-author="${env('ADMIN')}"] .value:has-text("mm")`, { timeout: 15000 });
    result.shapes[kind].seen_by_annotator = await B.page.textContent(`${item} .value`);
    log(kind, result.shapes[kind].text);
  }

  if (OUT_DIR) {
    await A.page.screenshot({ path: `${OUT_DIR}/admin.png` });
    await B.page.screenshot({ path: `${OUT_DIR}/annotator.png` });
  }
  result.page_errors = [...A.errors, ...B.errors];
  result.seconds = (Date.now() - t0) / 1000;
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
