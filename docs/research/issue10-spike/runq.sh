#!/bin/bash
# usage: runq.sh queue.txt  -- runs each line's args through spike.py, 2 at a time, nice 15, 1 thread each
cd /work/main && . .venv/bin/activate && cd /tmp/research
mkdir -p logs
cat "$1" | xargs -P 2 -I{} bash -c 'args="{}"; n=$(echo $args | tr -d "-" | tr " " "_"); nice -n 15 python spike.py $args --steps ${STEPS:-800} > logs/$n.log 2>&1; echo done $n $(date +%T)'
