// page.test.cjs — dfd's web page in a real browser (Debian's headless Chromium, driven by
// playwright-core): keyboard access, uploading an image and a video, the verdicts with
// their colours, the face boxes, the video's progress, timeline and thumbnails, an API
// error shown as the API words it, and a phone-sized layout. Screenshots of each view
// go to OUTDIR.
//
// Usage: node page.test.cjs URL IMAGE VIDEO OUTDIR
// Environment: DFD_EXPECT_IMAGE / DFD_EXPECT_VIDEO — the verdict to expect (FAKE, REAL,
// NO FACE); unset: any verdict, as long as its colour matches it (a real model's call).
// DFD_EXPECT_IMAGE_KIND — the image's first face's kind (synthetic, manipulated, both; "a|b":
// either), DFD_EXPECT_IMAGE_FINDINGS — texts ("|"-separated) its line must contain.
// DFD_EXPECT_HEAT_MAPS — maps per image face (1: manipulation only, 2: with the
// synthetic-face detector's); unset: at least one.
// Exit status: 0 passed, 1 failed (with the reason on stderr).
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const [url, imagePath, videoPath, outdir] = process.argv.slice(2);
if (!url || !imagePath || !videoPath || !outdir) {
  console.error('usage: node page.test.cjs URL IMAGE VIDEO OUTDIR');
  process.exit(2);
}

function check(cond, what) {
  if (!cond) throw new Error('check failed: ' + what);
  console.log('ok - ' + what);
}

const verdictClass = { FAKE: 'fake', REAL: 'real', 'NO FACE': 'noface', ERROR: 'error' };

async function expectVerdict(page, expected, label) {
  await page.locator('#result').waitFor({ state: 'visible', timeout: +(process.env.DFD_VERDICT_TIMEOUT_MS || 120000) });
  const verdict = (await page.locator('#verdict').textContent()).trim();
  const cls = await page.locator('#verdict-box').getAttribute('class');
  if (expected) check(verdict === expected, label + ' verdict is ' + expected + ' (got ' + verdict + ')');
  else check(verdict in verdictClass && verdict !== 'ERROR', label + ' has a verdict (' + verdict + ')');
  check(cls.split(' ').includes(verdictClass[verdict]), label + ' verdict box is coloured as ' + verdict);
  // The colour itself: red for FAKE, green for REAL, grey for NO FACE.
  const rgb = await page.locator('#verdict-box').evaluate((e) => getComputedStyle(e).backgroundColor);
  const [r, g, b] = rgb.match(/\d+/g).map(Number);
  if (verdict === 'FAKE') check(r > g + 60 && r > b + 60, label + ' FAKE is red (' + rgb + ')');
  if (verdict === 'REAL') check(g > r + 40 && g > b + 20, label + ' REAL is green (' + rgb + ')');
  if (verdict === 'NO FACE') check(Math.abs(r - g) < 30 && Math.abs(g - b) < 30, label + ' NO FACE is grey (' + rgb + ')');
  return verdict;
}

(async () => {
  fs.mkdirSync(outdir, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'dfd-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.DFD_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 900 },
  });
  const errors = [];
  let failed = false;
  const page = ctx.pages()[0] || (await ctx.newPage());
  try {
    page.on('pageerror', (e) => errors.push(String(e)));
    // Failed requests are expected (the error case); script errors are not.
    page.on('console', (m) => { if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) errors.push(m.text()); });
    // Nothing may be loaded from anywhere but this server (no CDN: works offline).
    const origin = new URL(url).origin;
    const foreign = [];
    page.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(origin) && !u.startsWith('blob:') && !u.startsWith('data:')) foreign.push(u);
    });

    // File pickers are caught from the start (enabling that takes a round trip to the browser).
    const choosers = [];
    page.on('filechooser', (fc) => choosers.push(fc));

    await page.goto(url, { waitUntil: 'load' });
    check((await page.title()) === 'Deepfake Detector', 'the page is served at / to a browser');
    check(await page.locator('h1').isVisible(), 'the title is visible');

    // Keyboard: Tab reaches the drop zone, which is a button with a name.
    await page.keyboard.press('Tab');
    check(await page.evaluate(() => document.activeElement && document.activeElement.id === 'drop'),
      'Tab reaches the drop zone');
    check(await page.locator('#analyze').isHidden(), 'no Analyze button before a file is chosen');

    // ---- an image, chosen with the keyboard: Enter on the drop zone opens the file picker ----
    await page.keyboard.press('Enter');
    for (let i = 0; i < 100 && !choosers.length; i++) await page.waitForTimeout(50);
    check(choosers.length === 1, 'Enter on the drop zone opens the file picker');
    await choosers[0].setFiles(imagePath);
    await page.locator('#preview-media img').waitFor({ state: 'visible' });
    check(await page.locator('#analyze').isEnabled(), 'Analyze is enabled once an image is chosen');
    check(await page.evaluate(() => document.activeElement.id === 'analyze'), 'focus moves to Analyze');
    await page.keyboard.press('Enter'); // keyboard-only: Enter on the focused button
    await expectVerdict(page, process.env.DFD_EXPECT_IMAGE, 'image');
    const scoreText = await page.locator('#score').textContent();
    check(/P\(fake\) \d+\.\d %/.test(scoreText), 'P(fake) shown as a percentage (' + scoreText + ')');
    await page.waitForFunction(() => document.getElementById('image-canvas').dataset.boxes !== undefined,
      null, { timeout: 10000 }).catch(() => {});
    const boxes = Number(await page.locator('#image-canvas').getAttribute('data-boxes'));
    check(boxes >= 1, 'the image is drawn with ' + boxes + ' face box(es)');
    // The boxes are really drawn: the canvas differs from the bare image along them.
    const changed = await page.evaluate(() => {
      const c = document.getElementById('image-canvas');
      const img = document.querySelector('#preview-media img');
      const o = document.createElement('canvas');
      o.width = c.width;
      o.height = c.height;
      o.getContext('2d').drawImage(img, 0, 0, c.width, c.height);
      const a = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const b = o.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < a.length; i += 4)
        if (Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]) > 60) n++;
      return n;
    });
    check(changed > 300 * boxes, 'face boxes are drawn over the image (' + changed + ' pixels changed)');
    check((await page.locator('#faces li').count()) === boxes, 'one line per face under the picture');
    // Each face's findings in words: the manipulation check's always, the synthetic-face
    // check's when the server runs one, each with its score.
    const faceTexts = await page.locator('#faces li').allTextContents();
    for (const t of faceTexts) {
      check(/(Face looks swapped or altered|No sign of a face swap or alteration) \(\d+\.\d %/.test(t),
        'the face line says in words whether the face looks swapped or altered (' + t + ')');
    }
    if (process.env.DFD_EXPECT_IMAGE_KIND) {
      const kinds = await page.locator('#faces li').evaluateAll((ls) => ls.map((l) => l.dataset.kind));
      const want = process.env.DFD_EXPECT_IMAGE_KIND.split('|');
      check(want.includes(kinds[0]), 'the first face is of kind ' + want.join(' or ') + ' (' + kinds[0] + ')');
      const synthetic = kinds[0] === 'synthetic' || kinds[0] === 'both';
      check(!synthetic || /Looks AI-generated \(\d+\.\d %/.test(faceTexts[0]), 'a generated face is said to look AI-generated');
      const detail = await page.locator('#detail').textContent();
      check(!synthetic || /looks AI-generated/.test(detail), 'the verdict says a face looks AI-generated (' + detail + ')');
    }
    for (const f of (process.env.DFD_EXPECT_IMAGE_FINDINGS || '').split('|').filter(Boolean)) {
      check(faceTexts[0].includes(f), 'the first face reads "' + f + '"');
    }
    // Each face's heat map (the page asks for ?explain=1): its crop enlarged with the map
    // over it, and a button that hides and shows the map.
    await page.waitForFunction(() => document.querySelector('#faces .heat[data-ready="1"]'), null, { timeout: 15000 })
      .catch(() => {});
    check(await page.locator('#faces .heat[data-ready="1"]').count() >= 1, 'a face has its heat map, on its crop');
    const heat = page.locator('#faces li').first().locator('.heat');
    const nMaps = await heat.locator('canvas.heat-canvas').count();
    const wantMaps = Number(process.env.DFD_EXPECT_HEAT_MAPS || 0);
    check(wantMaps ? nMaps === wantMaps : nMaps >= 1, 'the first face shows ' + nMaps + ' map(s)');
    const pixels = () => heat.locator('canvas.heat-canvas').first().evaluate((c) =>
      Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data));
    const canvas = heat.locator('canvas.heat-canvas').first();
    check((await canvas.getAttribute('data-overlay')) === 'on', 'the heat overlay is shown at first');
    const withMap = await pixels();
    const opaque = withMap.filter((v, i) => i % 4 === 3 && v > 0).length;
    check(opaque > 0.9 * withMap.length / 4, 'the crop is drawn under the map (' + opaque + ' opaque pixels)');
    await page.screenshot({ path: path.join(outdir, 'image-heatmap.png'), fullPage: true });
    const toggle = heat.locator('button.heat-toggle');
    await toggle.click();
    check((await canvas.getAttribute('data-overlay')) === 'off' && (await toggle.getAttribute('aria-pressed')) === 'false',
      'the toggle hides the overlay');
    const bare = await pixels();
    let differ = 0;
    for (let i = 0; i < bare.length; i += 4) {
      if (Math.abs(bare[i] - withMap[i]) + Math.abs(bare[i + 1] - withMap[i + 1]) + Math.abs(bare[i + 2] - withMap[i + 2]) > 12) differ++;
    }
    check(differ > 0.2 * bare.length / 4, 'without the overlay the crop looks different (' + differ + ' pixels changed)');
    await toggle.click();
    check((await canvas.getAttribute('data-overlay')) === 'on', 'the toggle shows it again');
    await page.screenshot({ path: path.join(outdir, 'image-verdict.png'), fullPage: true });
    await page.emulateMedia({ colorScheme: 'dark' }); // the original's look
    await page.waitForTimeout(400); // let the colour transitions end
    await page.screenshot({ path: path.join(outdir, 'image-verdict-dark.png'), fullPage: true });
    await page.emulateMedia({ colorScheme: 'light' });

    // ---- a video ----
    await page.click('#clear');
    check(await page.locator('#result').isHidden(), 'choosing another file clears the verdict');
    await page.setInputFiles('#file', videoPath);
    await page.locator('#preview-media video').waitFor({ state: 'visible' });
    await page.click('#analyze');
    await page.locator('#progress-box').waitFor({ state: 'visible' });
    // The job is followed with a progress bar that moves.
    let sawProgress = false;
    for (let i = 0; i < 600 && !(await page.locator('#result').isVisible()); i++) {
      const v = await page.locator('#progress').evaluate((p) => (p.hasAttribute('value') ? p.value : -1));
      const text = await page.locator('#progress-text').textContent();
      if (v > 0 && v < 1 && /Analysing the video/.test(text)) {
        if (!sawProgress) await page.screenshot({ path: path.join(outdir, 'video-progress.png'), fullPage: true });
        sawProgress = true;
      }
      await page.waitForTimeout(50);
    }
    if (process.env.DFD_EXPECT_PROGRESS === '1') check(sawProgress, 'the progress bar moved while the video was analysed');
    const vv = await expectVerdict(page, process.env.DFD_EXPECT_VIDEO, 'video');
    if (vv !== 'NO FACE') {
      check(await page.locator('#why-video').isVisible(), 'the video\'s explanation is shown');
      const tracks = Number(await page.locator('#timeline').getAttribute('data-tracks'));
      const points = Number(await page.locator('#timeline').getAttribute('data-points'));
      check(tracks >= 1 && points >= tracks, 'the timeline shows ' + tracks + ' track(s), ' + points + ' points');
      check((await page.locator('#legend span').count()) === tracks, 'one legend entry per track');
      await page.waitForFunction(() => document.getElementById('thumbs').dataset.drawn !== undefined,
        null, { timeout: 30000 });
      const drawn = Number(await page.locator('#thumbs').getAttribute('data-drawn'));
      check(drawn >= 1, drawn + ' suspicious frame thumbnail(s) drawn from the video');
      const lit = await page.locator('#thumbs canvas').first().evaluate((c) => {
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 60) n++;
        return n / (d.length / 4);
      });
      check(lit > 0.2, 'the thumbnail shows the frame, not a blank canvas (' + (100 * lit).toFixed(0) + '% lit)');
      // A track's heat map, on the crop of its most suspicious frame (seeked in the video).
      await page.waitForFunction(() => document.querySelector('#faces .heat[data-ready]'), null, { timeout: 15000 })
        .catch(() => {});
      check(await page.locator('#faces .heat[data-ready="1"]').count() >= 1,
        'a track has its heat map, on its most suspicious frame');
    }
    await page.screenshot({ path: path.join(outdir, 'video-verdict.png'), fullPage: true });

    // ---- a video analysis cancelled from the page (where the analysis is slow enough to catch) ----
    if (process.env.DFD_EXPECT_PROGRESS === '1') {
      await page.click('#analyze');
      await page.waitForFunction(() => /Analysing the video/.test(document.getElementById('progress-text').textContent),
        null, { timeout: 20000 });
      const del = page.waitForRequest((r) => r.method() === 'DELETE' && /\/v1\/jobs\//.test(r.url()));
      await page.click('#cancel');
      await del;
      check((await page.locator('#error').textContent()).trim() === 'Cancelled.', 'Cancel stops the job (DELETE) and says so');
      check(await page.locator('#progress-box').isHidden(), 'and the progress bar goes');
    }

    // ---- an error, worded by the API ----
    await page.click('#clear');
    await page.setInputFiles('#file', { name: 'notes.jpg', mimeType: 'image/jpeg', buffer: Buffer.from('not a picture at all') });
    await page.click('#analyze');
    await page.locator('#error').waitFor({ state: 'visible', timeout: 20000 });
    const err = await page.locator('#error').textContent();
    check(/unsupported format/.test(err), 'an unreadable upload shows the API\'s message (' + err.trim() + ')');
    check(await page.locator('#result').isHidden(), 'and no verdict');
    await page.screenshot({ path: path.join(outdir, 'error.png'), fullPage: true });

    // ---- a phone ----
    await page.setViewportSize({ width: 390, height: 844 });
    await page.click('#clear');
    await page.setInputFiles('#file', imagePath);
    await page.click('#analyze');
    await page.locator('#result').waitFor({ state: 'visible', timeout: +(process.env.DFD_VERDICT_TIMEOUT_MS || 120000) });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, 'nothing overflows a 390 px wide phone screen (' + overflow + ' px)');
    await page.screenshot({ path: path.join(outdir, 'phone.png'), fullPage: true });

    check(foreign.length === 0, 'the page loads nothing from other origins' + (foreign.length ? ': ' + foreign.join(', ') : ''));
    check(errors.length === 0, 'no script errors' + (errors.length ? ': ' + errors.join(' | ') : ''));
  } catch (e) {
    failed = true;
    console.error(e && e.stack ? e.stack : String(e));
    if (errors.length) console.error('script errors: ' + errors.join(' | '));
    try {
      const shown = await page.locator('#error').textContent({ timeout: 1000 });
      if (shown && shown.trim()) console.error('the page shows: ' + shown.trim());
      await page.screenshot({ path: path.join(outdir, 'failure.png'), fullPage: true });
    } catch (_) { /* the screenshot is a courtesy */ }
  } finally {
    await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  process.exit(failed ? 1 : 0);
})();
