/* app.js — dfd's page: choose or drop a file, preview it, send it to POST /v1/analyze,
 * follow a video's job (GET /v1/jobs/{id}) with a progress bar, and show the verdict and
 * why: boxes on the image's faces, or a timeline of P(fake) per face track and the most
 * suspicious frames (drawn here from the video itself, by seeking). Server text is only
 * ever set as text, never as HTML. No libraries, no build step. */
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const el = {
    drop: $('drop'), input: $('file'), limit: $('limit'),
    preview: $('preview'), previewMedia: $('preview-media'), fileName: $('file-name'),
    analyze: $('analyze'), cancel: $('cancel'), clear: $('clear'),
    progressBox: $('progress-box'), progress: $('progress'), progressText: $('progress-text'),
    result: $('result'), verdictBox: $('verdict-box'), verdict: $('verdict'), score: $('score'),
    detail: $('detail'), why: $('why'), whyImage: $('why-image'), whyVideo: $('why-video'),
    imageCanvas: $('image-canvas'), timeline: $('timeline'), legend: $('legend'), thumbs: $('thumbs'),
    faces: $('faces'), error: $('error'),
  };

  let file = null;        // the chosen File
  let fileUrl = null;     // its blob: URL (preview, image boxes, video thumbnails)
  let maxUpload = 200 * 1048576;
  let xhr = null;         // the upload in progress
  let jobId = null;       // the video job being followed
  let pollTimer = null;
  let lastResult = null;  // for redrawing the timeline when the window is resized

  const TRACK_COLOURS = ['#4ea1ff', '#ffb224', '#b18cff', '#3dd68c', '#ff7ab6', '#6ee7f9', '#f97316', '#a3e635'];

  /* ---- helpers ------------------------------------------------------------------- */

  function mb(bytes) {
    if (bytes < 1048576) return Math.max(1, Math.round(bytes / 1024)) + ' KB';
    return (bytes / 1048576).toFixed(bytes < 10485760 ? 1 : 0) + ' MB';
  }
  function pct(p) { return (100 * p).toFixed(1) + ' %'; }
  function scoreColour(p) {
    // green (real) through yellow to red (fake)
    const hue = Math.round(120 * (1 - Math.min(1, Math.max(0, p))));
    return 'hsl(' + hue + ', 80%, 50%)';
  }
  function show(node, on) { node.hidden = !on; }
  function fmtTime(s) {
    const m = Math.floor(s / 60);
    const r = s - 60 * m;
    return m + ':' + (r < 10 ? '0' : '') + r.toFixed(1);
  }

  function showError(message) {
    el.error.textContent = message;
    show(el.error, true);
  }

  function setBusy(busy, cancellable) {
    el.analyze.disabled = busy || !file;
    el.clear.disabled = busy;
    show(el.cancel, busy && cancellable);
    show(el.progressBox, busy);
  }

  function setProgress(fraction, text) {
    if (fraction === null) el.progress.removeAttribute('value'); // indeterminate
    else el.progress.value = fraction;
    el.progressText.textContent = text;
  }

  function resetResult() {
    show(el.result, false);
    show(el.error, false);
    show(el.why, false);
    show(el.whyImage, false);
    show(el.whyVideo, false);
    el.faces.textContent = '';
    el.thumbs.textContent = '';
    el.legend.textContent = '';
    lastResult = null;
  }

  /* ---- choosing a file --------------------------------------------------------------- */

  function choose(f) {
    stopPolling();
    resetResult();
    if (fileUrl) URL.revokeObjectURL(fileUrl);
    file = f;
    fileUrl = URL.createObjectURL(f);
    el.previewMedia.textContent = '';
    const isVideo = /^video\//.test(f.type) || /\.(mkv|avi|mov|mp4|webm|m4v)$/i.test(f.name);
    let media;
    if (isVideo) {
      media = document.createElement('video');
      media.controls = true;
      media.muted = true;
      media.playsInline = true;
      media.preload = 'metadata';
    } else {
      media = document.createElement('img');
      media.alt = 'Preview of ' + f.name;
    }
    media.src = fileUrl;
    el.previewMedia.appendChild(media);
    el.fileName.textContent = f.name + ' ';
    const size = document.createElement('small');
    size.textContent = '(' + mb(f.size) + ')';
    el.fileName.appendChild(size);
    show(el.preview, true);
    el.analyze.disabled = false;
    if (f.size > maxUpload) {
      showError('This file is ' + mb(f.size) + ', over the server\'s limit of ' + mb(maxUpload) + '.');
      el.analyze.disabled = true;
    }
    el.analyze.focus();
  }

  function clearFile() {
    stopPolling();
    resetResult();
    if (fileUrl) URL.revokeObjectURL(fileUrl);
    file = null;
    fileUrl = null;
    el.input.value = '';
    show(el.preview, false);
    el.drop.focus();
  }

  el.drop.addEventListener('click', () => el.input.click());
  el.drop.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      el.input.click();
    }
  });
  el.input.addEventListener('change', () => { if (el.input.files.length) choose(el.input.files[0]); });
  ['dragenter', 'dragover'].forEach((t) => el.drop.addEventListener(t, (e) => {
    e.preventDefault();
    el.drop.classList.add('dragging');
  }));
  ['dragleave', 'drop'].forEach((t) => el.drop.addEventListener(t, () => el.drop.classList.remove('dragging')));
  el.drop.addEventListener('drop', (e) => {
    e.preventDefault();
    if (e.dataTransfer && e.dataTransfer.files.length) choose(e.dataTransfer.files[0]);
  });
  // A file dropped beside the zone should not make the browser navigate away from the page.
  window.addEventListener('dragover', (e) => e.preventDefault());
  window.addEventListener('drop', (e) => e.preventDefault());
  el.clear.addEventListener('click', clearFile);

  /* ---- analysing --------------------------------------------------------------------- */

  function parseJson(text) {
    try { return JSON.parse(text); } catch (e) { return null; }
  }

  function analyze() {
    if (!file) return;
    resetResult();
    setBusy(true, true);
    setProgress(0, 'Uploading…');
    const form = new FormData();
    form.append('file', file, file.name);
    xhr = new XMLHttpRequest();
    // explain=1: a heat map per face (where in the face the evidence is), shown beside its score.
    xhr.open('POST', '/v1/analyze?explain=1');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) setProgress(e.loaded / e.total, 'Uploading… ' + Math.round(100 * e.loaded / e.total) + ' %');
    };
    xhr.upload.onload = () => setProgress(null, 'Analysing…');
    xhr.onload = () => {
      const status = xhr.status;
      const body = parseJson(xhr.responseText);
      xhr = null;
      if (status === 202 && body && body.job_id) {
        jobId = body.job_id;
        setProgress(0, 'Waiting for a free worker…');
        poll();
      } else if (body && body.schema && body.results) {
        setBusy(false);
        render(body.results[0]);
      } else {
        setBusy(false);
        showError(body && body.error ? body.error : 'The server answered ' + status + ' ' + xhr_status_text(status) + '.');
      }
    };
    xhr.onerror = () => {
      xhr = null;
      setBusy(false);
      showError('The upload failed: the server could not be reached or closed the connection.');
    };
    xhr.onabort = () => {
      xhr = null;
      setBusy(false);
      showError('Cancelled.');
    };
    xhr.send(form);
  }

  function xhr_status_text(status) {
    return ({ 400: 'Bad Request', 413: 'Payload Too Large', 415: 'Unsupported Media Type', 422: 'Unprocessable', 499: 'Cancelled',
      500: 'Internal Server Error', 503: 'Service Unavailable' })[status] || '';
  }

  function stopPolling() {
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = null;
    jobId = null;
  }

  function poll() {
    const id = jobId;
    fetch('/v1/jobs/' + encodeURIComponent(id), { headers: { Accept: 'application/json' } })
      .then((r) => r.json().then((body) => ({ status: r.status, body })))
      .then(({ status, body }) => {
        if (id !== jobId) return; // cancelled or replaced meanwhile
        if (status !== 200) {
          stopPolling();
          setBusy(false);
          showError(body.error || 'The job could not be read (' + status + ').');
          return;
        }
        if (body.state === 'queued') {
          setProgress(0, 'Waiting for a free worker…');
        } else if (body.state === 'running') {
          setProgress(body.progress, 'Analysing the video… ' + Math.round(100 * body.progress) + ' %');
        } else {
          stopPolling();
          setBusy(false);
          if (body.state === 'done' && body.result) render(body.result.results[0]);
          else if (body.state === 'cancelled') showError('Cancelled.');
          else showError(body.error || 'The analysis failed.');
          return;
        }
        pollTimer = setTimeout(poll, 400);
      })
      .catch(() => {
        if (id !== jobId) return;
        pollTimer = setTimeout(poll, 1000); // a blip: try again
      });
  }

  function cancel() {
    if (xhr) {
      xhr.abort();
      return;
    }
    if (jobId) {
      const id = jobId;
      stopPolling();
      setBusy(false);
      showError('Cancelled.');
      fetch('/v1/jobs/' + encodeURIComponent(id), { method: 'DELETE' }).catch(() => {});
    }
  }

  el.analyze.addEventListener('click', analyze);
  el.cancel.addEventListener('click', cancel);

  /* ---- the verdict and why ------------------------------------------------------------ */

  function render(r) {
    lastResult = r;
    const v = r.verdict;
    const cls = { FAKE: 'fake', REAL: 'real', NO_FACE: 'noface', ERROR: 'error' }[v] || 'error';
    el.verdictBox.className = 'verdict-box ' + cls;
    el.verdict.textContent = v === 'NO_FACE' ? 'NO FACE' : v;
    el.score.textContent = typeof r.p_fake === 'number' ? 'P(fake) ' + pct(r.p_fake) : '';
    const faces = r.faces || [];
    let detail;
    if (v === 'ERROR') detail = r.error || 'The file could not be analysed.';
    else if (v === 'NO_FACE') detail = 'No face was found, so there is nothing to judge.';
    else {
      const what = r.media === 'video' ? (faces.length === 1 ? '1 face track' : faces.length + ' face tracks')
        : (faces.length === 1 ? '1 face' : faces.length + ' faces');
      detail = what + ' found. The file scores as its most suspicious face' +
        (typeof r.threshold === 'number' ? '; FAKE from ' + pct(r.threshold) + ' up' : '') + '.';
      if (v === 'FAKE' && KIND_WORDS[r.kind]) detail += ' ' + KIND_WORDS[r.kind];
    }
    el.detail.textContent = detail;
    show(el.result, true);
    if (faces.length) {
      show(el.why, true);
      listFaces(r);
      if (r.media === 'video' && r.frames && r.frames.length) {
        show(el.whyVideo, true);
        drawTimeline(r);
        drawThumbnails(r);
      } else if (r.media === 'image') {
        show(el.whyImage, true);
        drawImageBoxes(r);
      }
    }
    el.verdict.setAttribute('tabindex', '-1');
    el.verdict.focus();
  }

  // What a FAKE verdict's kind means, for someone who is not an expert.
  const KIND_WORDS = {
    manipulated: 'A face looks swapped or altered.',
    synthetic: 'A face looks AI-generated: a person who may never have existed.',
    both: 'A face looks AI-generated, and a face looks swapped or altered.',
  };

  // One detector's finding on a face, in words, with its score and the point from which it flags.
  function finding(fired, yes, no, p, threshold) {
    const span = document.createElement('span');
    span.className = 'finding' + (fired ? ' fired' : '');
    let text = fired ? yes : no;
    if (typeof p === 'number') {
      text += ' (' + pct(p) + (typeof threshold === 'number' ? ', flagged from ' + pct(threshold) : '') + ')';
    }
    span.textContent = text;
    return span;
  }

  function fires(p, threshold) { return typeof p === 'number' && typeof threshold === 'number' && p >= threshold; }

  function trackColour(id) { return TRACK_COLOURS[Math.abs(id) % TRACK_COLOURS.length]; }

  function listFaces(r) {
    el.faces.textContent = '';
    r.faces.forEach((f, i) => {
      const li = document.createElement('li');
      const sw = document.createElement('span');
      sw.className = 'swatch';
      sw.style.background = r.media === 'video' ? trackColour(f.id) : scoreColour(f.p_fake);
      li.appendChild(sw);
      let text = (r.media === 'video' ? 'Track ' : 'Face ') + (i + 1) + ': P(fake) ' +
        (typeof f.p_fake === 'number' ? pct(f.p_fake) : 'n/a');
      if (typeof f.p_fake_video_model === 'number') text += ' (video model ' + pct(f.p_fake_video_model) + ')';
      if (f.frames && f.frames.length) text += ', seen in ' + f.frames.length + (f.frames.length === 1 ? ' frame' : ' frames');
      li.appendChild(document.createTextNode(text));
      li.dataset.kind = f.kind || '';
      // Each detector's finding in words: the synthetic-face one (when the server runs one)
      // and the manipulation one, each against its own threshold.
      const found = document.createElement('div');
      found.className = 'findings';
      if (typeof f.p_synthetic === 'number') {
        found.appendChild(finding(fires(f.p_synthetic, r.threshold_synthetic), 'Looks AI-generated',
          'Does not look AI-generated', f.p_synthetic, r.threshold_synthetic));
      }
      const pm = typeof f.p_manipulated === 'number' ? f.p_manipulated : f.p_fake;
      const tm = typeof r.threshold_manipulated === 'number' ? r.threshold_manipulated : r.threshold;
      found.appendChild(finding(fires(pm, tm), 'Face looks swapped or altered', 'No sign of a face swap or alteration',
        pm, tm));
      li.appendChild(found);
      if (f.heatmap) li.appendChild(heatFigure(r, f, i));
      el.faces.appendChild(li);
    });
  }

  /* ---- heat maps: where in a face the evidence for "fake" is ---------------------------- */

  // The colour ramp of `dfd scan --explain-dir`: blue, cyan, yellow, orange, red.
  const HEAT_STOPS = [[0, 0, 160], [0, 160, 255], [255, 255, 0], [255, 128, 0], [230, 0, 0]];
  const HEAT_SIDE = 192; // the crop enlarged to this many CSS pixels

  // A grid x grid canvas of the map's colours, with more opacity where the value is higher;
  // drawn scaled up with smoothing, it blends the cells as the PNGs do.
  function heatLayer(map, grid) {
    const c = document.createElement('canvas');
    c.width = c.height = grid;
    const ctx = c.getContext('2d');
    const img = ctx.createImageData(grid, grid);
    for (let y = 0; y < grid; y++) {
      for (let x = 0; x < grid; x++) {
        const v = Math.max(0, Math.min(1, map[y][x]));
        const t = v * 4, k = Math.min(3, Math.floor(t)), f = t - k;
        const o = 4 * (y * grid + x);
        for (let i = 0; i < 3; i++) img.data[o + i] = HEAT_STOPS[k][i] * (1 - f) + HEAT_STOPS[k + 1][i] * f;
        img.data[o + 3] = Math.round(255 * (0.15 + 0.45 * v));
      }
    }
    ctx.putImageData(img, 0, 0);
    return c;
  }

  // The face's crop (from the uploaded image, or the video's frame the map was made on).
  function loadSource(r, hm) {
    const url = fileUrl;
    if (r.media !== 'video') {
      return new Promise((resolve) => {
        const img = new Image();
        img.onload = () => resolve(url === fileUrl ? img : null);
        img.onerror = () => resolve(null);
        img.src = url;
      });
    }
    const video = document.createElement('video');
    video.muted = true;
    video.preload = 'auto';
    video.src = url;
    return new Promise((resolve) => {
      const go = () => seek(video, hm.time_s || 0).then(() => resolve(url === fileUrl && video.videoWidth ? video : null));
      if (video.readyState >= 1) go();
      else {
        video.addEventListener('loadeddata', go, { once: true });
        video.addEventListener('error', () => resolve(null), { once: true });
      }
    });
  }

  function drawHeat(c, src, hm, map, on) {
    const ctx = c.getContext('2d');
    ctx.clearRect(0, 0, c.width, c.height);
    const [x, y, side] = hm.crop;
    if (src) ctx.drawImage(src, x, y, side, side, 0, 0, c.width, c.height);
    if (on) {
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(heatLayer(map, hm.grid), 0, 0, c.width, c.height);
    }
    c.dataset.overlay = on ? 'on' : 'off';
  }

  // One face's crop, enlarged, with each detector's map over it, and a button that shows
  // or hides the maps.
  function heatFigure(r, f, i) {
    const hm = f.heatmap;
    const box = document.createElement('div');
    box.className = 'heat';
    const maps = [['manipulated', 'Swap or alteration evidence', hm.manipulated]];
    if (hm.synthetic) maps.push(['synthetic', 'AI-generation evidence', hm.synthetic]);
    const canvases = [];
    let on = true;
    let src = null;
    const row = document.createElement('div');
    row.className = 'heat-row';
    maps.forEach(([key, title, map]) => {
      const fig = document.createElement('figure');
      const c = document.createElement('canvas');
      c.width = c.height = HEAT_SIDE;
      c.className = 'heat-canvas';
      c.dataset.map = key;
      c.setAttribute('role', 'img');
      c.setAttribute('aria-label', title + ' on ' + (r.media === 'video' ? 'track ' : 'face ') + (i + 1) +
        ': warmer colours mark the regions that drive the score up');
      const cap = document.createElement('figcaption');
      cap.textContent = title + (r.media === 'video' && typeof hm.time_s === 'number' ? ' · at ' + fmtTime(hm.time_s) : '');
      const how = key === 'manipulated' ? hm.method : hm.method_synthetic;
      if (how) cap.title = 'Map made by ' + how + ' (docs/explain.md)';
      fig.appendChild(c);
      fig.appendChild(cap);
      row.appendChild(fig);
      canvases.push([c, map]);
      drawHeat(c, null, hm, map, on);
    });
    const btn = document.createElement('button');
    btn.type = 'button';
    btn.className = 'button secondary heat-toggle';
    btn.setAttribute('aria-pressed', 'true');
    btn.textContent = 'Hide heat map';
    btn.addEventListener('click', () => {
      on = !on;
      btn.setAttribute('aria-pressed', on ? 'true' : 'false');
      btn.textContent = on ? 'Hide heat map' : 'Show heat map';
      canvases.forEach(([c, map]) => drawHeat(c, src, hm, map, on));
    });
    box.appendChild(row);
    box.appendChild(btn);
    loadSource(r, hm).then((s) => {
      src = s;
      canvases.forEach(([c, map]) => drawHeat(c, src, hm, map, on));
      box.dataset.ready = src ? '1' : '0';
    });
    return box;
  }

  function drawBox(ctx, box, p, scale, label) {
    const [x, y, w, h] = box.map((v) => v * scale);
    const lw = Math.max(2, Math.round(Math.max(ctx.canvas.width, ctx.canvas.height) / 250));
    ctx.lineWidth = lw;
    ctx.strokeStyle = scoreColour(p);
    ctx.strokeRect(x, y, w, h);
    if (label) {
      const fs = Math.max(12, Math.round(lw * 6));
      ctx.font = '600 ' + fs + 'px system-ui, sans-serif';
      const tw = ctx.measureText(label).width + fs * 0.6;
      const ty = y - fs * 1.3 >= 0 ? y - fs * 1.3 : y + h;
      ctx.fillStyle = scoreColour(p);
      ctx.fillRect(x - lw / 2, ty, tw, fs * 1.3);
      ctx.fillStyle = '#000';
      ctx.fillText(label, x - lw / 2 + fs * 0.3, ty + fs);
    }
  }

  function drawImageBoxes(r) {
    const img = new Image();
    img.onload = () => {
      const c = el.imageCanvas;
      c.width = img.naturalWidth;
      c.height = img.naturalHeight;
      const ctx = c.getContext('2d');
      ctx.drawImage(img, 0, 0);
      let n = 0;
      r.faces.forEach((f) => {
        if (!f.box) return;
        drawBox(ctx, f.box, f.p_fake, 1, typeof f.p_fake === 'number' ? pct(f.p_fake) : '');
        n++;
      });
      c.dataset.boxes = String(n);
      c.setAttribute('aria-label', 'The image with ' + n + (n === 1 ? ' face' : ' faces') + ' boxed by score');
    };
    img.src = fileUrl;
  }

  function tracksOf(r) {
    const tracks = new Map();
    r.frames.forEach((fr) => (fr.faces || []).forEach((f) => {
      if (typeof f.p_fake !== 'number') return;
      if (!tracks.has(f.id)) tracks.set(f.id, []);
      tracks.get(f.id).push({ t: fr.time_s, p: f.p_fake });
    }));
    tracks.forEach((pts) => pts.sort((a, b) => a.t - b.t));
    return tracks;
  }

  function drawTimeline(r) {
    const c = el.timeline;
    const dpr = window.devicePixelRatio || 1;
    const W = c.clientWidth || 600;
    const H = c.clientHeight || 260;
    c.width = Math.round(W * dpr);
    c.height = Math.round(H * dpr);
    const ctx = c.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    const css = getComputedStyle(document.documentElement);
    const muted = css.getPropertyValue('--muted').trim() || '#999';
    const border = css.getPropertyValue('--border').trim() || '#444';
    const L = 46, R = 24, T = 12, B = 30; // R leaves room for the last time label
    const tracks = tracksOf(r);
    let tmax = 0;
    r.frames.forEach((fr) => { tmax = Math.max(tmax, fr.time_s || 0); });
    if (tmax <= 0) tmax = 1;
    const X = (t) => L + (W - L - R) * (t / tmax);
    const Y = (p) => T + (H - T - B) * (1 - p);
    ctx.font = '12px system-ui, sans-serif';
    ctx.lineWidth = 1;
    ctx.strokeStyle = border;
    ctx.fillStyle = muted;
    ctx.textAlign = 'right';
    for (let k = 0; k <= 4; k++) {
      const p = k / 4;
      ctx.beginPath();
      ctx.moveTo(L, Y(p));
      ctx.lineTo(W - R, Y(p));
      ctx.stroke();
      ctx.fillText(Math.round(100 * p) + '%', L - 6, Y(p) + 4);
    }
    ctx.textAlign = 'center';
    const step = niceStep(tmax / 6);
    for (let t = 0; t <= tmax + 1e-9; t += step) ctx.fillText(t.toFixed(step < 1 ? 1 : 0) + ' s', X(t), H - 10);
    // The decision threshold; with a synthetic-face check beside the manipulation check, each
    // check's own (a frame's P(fake) is the score of the check closer to flagging it).
    const lines = typeof r.threshold_synthetic === 'number' && typeof r.threshold_manipulated === 'number'
      ? [r.threshold_manipulated, r.threshold_synthetic] : (typeof r.threshold === 'number' ? [r.threshold] : []);
    lines.forEach((th, k) => {
      ctx.setLineDash(k ? [2, 4] : [6, 4]);
      ctx.strokeStyle = muted;
      ctx.beginPath();
      ctx.moveTo(L, Y(th));
      ctx.lineTo(W - R, Y(th));
      ctx.stroke();
      ctx.setLineDash([]);
    });
    let points = 0;
    el.legend.textContent = '';
    const face = new Map((r.faces || []).map((f) => [f.id, f]));
    let idx = 0;
    tracks.forEach((pts, id) => {
      const col = trackColour(id);
      ctx.strokeStyle = col;
      ctx.fillStyle = col;
      ctx.lineWidth = 2;
      ctx.beginPath();
      pts.forEach((q, i) => (i ? ctx.lineTo(X(q.t), Y(q.p)) : ctx.moveTo(X(q.t), Y(q.p))));
      ctx.stroke();
      pts.forEach((q) => {
        ctx.beginPath();
        ctx.arc(X(q.t), Y(q.p), 3, 0, 2 * Math.PI);
        ctx.fill();
        points++;
      });
      const lg = document.createElement('span');
      lg.style.setProperty('--swatch', col);
      const f = face.get(id);
      idx++;
      lg.textContent = 'Track ' + idx + (f && typeof f.p_fake === 'number' ? ' — P(fake) ' + pct(f.p_fake) : '');
      el.legend.appendChild(lg);
    });
    c.dataset.tracks = String(tracks.size);
    c.dataset.points = String(points);
    c.setAttribute('aria-label', 'Timeline of P(fake) for ' + tracks.size + ' face track(s) over ' +
      r.frames.length + ' sampled frames');
  }

  function niceStep(raw) {
    const p = Math.pow(10, Math.floor(Math.log10(raw)));
    const m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }

  function seek(video, t) {
    return new Promise((resolve) => {
      const done = () => { video.removeEventListener('seeked', done); clearTimeout(timer); resolve(); };
      const timer = setTimeout(done, 3000);
      video.addEventListener('seeked', done);
      video.currentTime = t;
    });
  }

  async function drawThumbnails(r) {
    el.thumbs.textContent = '';
    // The frames whose most suspicious face scores highest, at most 4.
    const ranked = r.frames
      .map((fr) => ({ fr, p: Math.max(-1, ...(fr.faces || []).map((f) => (typeof f.p_fake === 'number' ? f.p_fake : -1))) }))
      .filter((x) => x.p >= 0)
      .sort((a, b) => b.p - a.p)
      .slice(0, 4);
    if (!ranked.length) return;
    const url = fileUrl;
    const video = document.createElement('video');
    video.muted = true;
    video.preload = 'auto';
    video.src = url;
    const ready = await new Promise((resolve) => {
      if (video.readyState >= 1) return resolve(true);
      video.addEventListener('loadeddata', () => resolve(true), { once: true });
      video.addEventListener('error', () => resolve(false), { once: true });
      setTimeout(() => resolve(video.readyState >= 1), 5000);
    });
    let drawn = 0;
    for (const { fr, p } of ranked) {
      if (url !== fileUrl) return; // another file was chosen meanwhile
      const fig = document.createElement('figure');
      const c = document.createElement('canvas');
      const cap = document.createElement('figcaption');
      cap.textContent = fmtTime(fr.time_s || 0) + ' · P(fake) ' + pct(p);
      fig.appendChild(c);
      fig.appendChild(cap);
      el.thumbs.appendChild(fig);
      if (!ready || !video.videoWidth) continue;
      await seek(video, fr.time_s || 0);
      const scale = Math.min(1, 320 / video.videoWidth);
      c.width = Math.round(video.videoWidth * scale);
      c.height = Math.round(video.videoHeight * scale);
      c.setAttribute('role', 'img');
      c.setAttribute('aria-label', 'Frame at ' + fmtTime(fr.time_s || 0) + ', P(fake) ' + pct(p));
      const ctx = c.getContext('2d');
      ctx.drawImage(video, 0, 0, c.width, c.height);
      (fr.faces || []).forEach((f) => { if (f.box) drawBox(ctx, f.box, f.p_fake, scale, ''); });
      drawn++;
    }
    el.thumbs.dataset.drawn = String(drawn);
    video.removeAttribute('src');
    video.load();
  }

  window.addEventListener('resize', () => {
    if (lastResult && lastResult.media === 'video' && lastResult.frames && !el.whyVideo.hidden) drawTimeline(lastResult);
  });

  /* ---- the server's limit ----------------------------------------------------------------- */

  fetch('/v1/health', { headers: { Accept: 'application/json' } })
    .then((r) => r.json())
    .then((h) => {
      if (h.max_upload_bytes) {
        maxUpload = h.max_upload_bytes;
        el.limit.textContent = 'limit ' + mb(maxUpload);
      }
      if (h.status === 'degraded' && h.error) showError('The server has no model loaded: ' + h.error);
    })
    .catch(() => {});
})();
