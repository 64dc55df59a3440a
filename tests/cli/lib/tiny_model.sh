# tests/cli/lib/tiny_model.sh — sourced by the server tests (not a test itself: ctest runs
# tests/cli/*.sh only). tiny_model DIR trains a tiny-cnn on six crops of the astronaut and
# six noisy copies (DIR/data), writing DIR/model/best.safetensors and DIR/train.log: a
# model that proves the server's plumbing, not accuracy. Needs BIN, SRC and fail() from
# the caller.
tiny_model() {
  local dir=$1 i crop
  mkdir -p "$dir/data/real" "$dir/data/fake"
  for i in 0 1 2 3 4 5; do
    crop="crop=200:200:$((150 + i * 5)):$((50 + i * 4)),scale=48:48"
    ffmpeg -loglevel error -y -i "$SRC/examples/astronaut.png" -vf "$crop" "$dir/data/real/r$i.jpg" || fail "ffmpeg"
    ffmpeg -loglevel error -y -i "$SRC/examples/astronaut.png" -vf "$crop,noise=alls=80:allf=t" "$dir/data/fake/f$i.jpg" ||
      fail "ffmpeg"
  done
  "$BIN" train image --arch tiny-cnn --data "$dir/data" --out "$dir/model" --epochs 1 --input-size 32 --batch 4 \
    --threads 1 --backend ref --val-fraction 0.34 --patience 0 >"$dir/train.log" 2>&1 ||
    fail "training the tiny model: $(tail -n 3 "$dir/train.log")"
}
