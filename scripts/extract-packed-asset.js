// extract-packed-asset.js — cuts one file out of an Emscripten "packed assets" bundle, as
// MediaPipe's npm solutions ship their models (face_mesh: face_landmark.tflite inside
// face_mesh_solution_packed_assets.data). The loader script lists every file as
// {"filename": ..., "start": ..., "end": ...}; the offsets are read from there, never assumed.
// A .tflite is checked for the TFLite identifier "TFL3" at byte 4.
// Usage: node extract-packed-asset.js LOADER_JS DATA_FILE NAME_IN_BUNDLE OUT_FILE
'use strict';
const fs = require('fs');
const [loader, data, name, out] = process.argv.slice(2);
if (!out) { console.error('usage: extract-packed-asset.js LOADER_JS DATA_FILE NAME_IN_BUNDLE OUT_FILE'); process.exit(2); }
const js = fs.readFileSync(loader, 'utf8');
const re = /\{\s*"filename"\s*:\s*"([^"]*)"\s*,\s*"start"\s*:\s*(\d+)\s*,\s*"end"\s*:\s*(\d+)/g;
let m, found = null;
while ((m = re.exec(js)) !== null) if (m[1] === name) found = { start: Number(m[2]), end: Number(m[3]) };
if (!found) { console.error(`${loader} does not list ${name}`); process.exit(1); }
const buf = fs.readFileSync(data);
if (!(found.start < found.end && found.end <= buf.length)) {
  console.error(`${name}: bytes ${found.start}..${found.end} do not lie inside ${data} (${buf.length} bytes)`); process.exit(1);
}
const part = buf.subarray(found.start, found.end);
if (name.endsWith('.tflite') && (part.length < 8 || part.toString('latin1', 4, 8) !== 'TFL3')) {
  console.error(`${name}: no TFLite identifier "TFL3" at byte 4 (wrong offsets?)`); process.exit(1);
}
fs.writeFileSync(out + '.tmp', part);
fs.renameSync(out + '.tmp', out);
console.error(`extracted ${name} (${part.length} bytes) to ${out}`);
