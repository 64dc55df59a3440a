// extract-tfjs.js — turns a TensorFlow.js model shipped as JavaScript modules (as the npm
// package nsfwjs does: model.min.js exports {modelTopology, weightsManifest}, and each
// shard module exports its bytes as base64) into the standard TF.js layout dfd imports:
// model.json + the binary weight shards named in its manifest.
// Usage: node extract-tfjs.js MODEL_DIR OUT_DIR
'use strict';
const fs = require('fs');
const path = require('path');
const [dir, out] = process.argv.slice(2);
if (!dir || !out) { console.error('usage: extract-tfjs.js MODEL_DIR OUT_DIR'); process.exit(2); }
const model = require(path.resolve(dir, 'model.min.js'));
if (!model.modelTopology || !Array.isArray(model.weightsManifest)) {
  console.error('not a TF.js model module: ' + dir); process.exit(1);
}
fs.mkdirSync(out, { recursive: true });
for (const group of model.weightsManifest) {
  for (const p of group.paths) {
    const b64 = require(path.resolve(dir, p + '.min.js'));
    if (typeof b64 !== 'string') { console.error('shard ' + p + ' is not base64 text'); process.exit(1); }
    fs.writeFileSync(path.join(out, p), Buffer.from(b64, 'base64'));
  }
}
fs.writeFileSync(path.join(out, 'model.json'), JSON.stringify(model));
