#!/usr/bin/env bash
# The reproductions of issue 12, run as a user would; prints each command, its exit status and
# its stderr (progress bars stripped). Usage: repro.sh [WORKDIR] (default: a fresh temp dir).
set -u
W=${1:-$(mktemp -d)}; cd "$W" || exit 1
say() { printf '\n$ %s\n' "$*"; "$@" 2> err.txt > out.txt; rc=$?; tr '\r' '\n' < err.txt | grep -v '|' | grep -v '^\s*$'; echo "[exit $rc]"; }
relpos synth six --records 6 --max-hours 0.25 --jobs 1 > /dev/null 2>&1
relpos prepare six store6 --jobs 1 > /dev/null 2>&1
relpos splits store6 --finetune 2 --test 1 > /dev/null 2>&1
cp -a store6 st; truncate -s 100 st/index.npz
say relpos splits st --finetune 2 --test 1
say relpos pretrain --store store6 --out r --set optim.batch_size=0
say relpos pretrain --store store6 --out r --set optim.accum_steps=0
say relpos pretrain --store store6 --out r --set runtime.log_every=0
say relpos pretrain --store store6 --out r --set optim.epochs=-1
say relpos pretrain --store store6 --out r --set optim.max_steps=0
say relpos synth x --records -2
say relpos prepare six st2 --limit -1
say relpos prepare six st2 --jobs 0
(ulimit -f 500; say relpos prepare six st3 --jobs 1)
say relpos prepare six st3 --jobs 1
ls st3/skipped | wc -l | sed 's/^/skipped files after the rerun: /'
echo '{"format": ' > st/store.json
say relpos splits st --finetune 2 --test 1
touch afile; say relpos synth afile --records 1
T=(--set optim.epochs=1 --set optim.max_steps=4 --set optim.batch_size=8 --set encoder.dim=16
   --set encoder.depth=1 --set encoder.heads=2 --set runtime.progress=false --set runtime.checkpoint_every=2)
say relpos pretrain --store store6 --out pt "${T[@]}"
say relpos pretrain --store store6 --out pt "${T[@]}" --set encoder.dim=32
say relpos pretrain --store store6 --out pt "${T[@]}" --set optim.batch_size=4
head -c 300 pt/encoder.safetensors > bad.safetensors; cp pt/encoder.json bad.json
say relpos finetune --store store6 --init bad.safetensors --out ft "${T[@]}"
say relpos splits store6 --finetune 2 --test 1 --seed 5
say relpos demo image --quick --set 'methods=[part,part_gird]'
say relpos pretrain --store store6 --out r2 --set pretext.head_kwargs.out_dim=2 "${T[@]}"
echo; echo "workdir: $W"
