#!/bin/bash
# usage: quality_seeds.sh WORKTREE TAG DATA:SEED ...: `msli quality --segments 1,4` from a checkout
# (a worktree with another default) on one thread, one JSON per data and seed, into /work/scratch/d07
wt=$1; tag=$2; shift 2
cd $wt
for ds in "$@"; do
  d=${ds%%:*}; s=${ds##*:}; name=$(basename $d)
  OMP_NUM_THREADS=1 /work/main/.venv/bin/python -m msli_core quality --data $d --segments 1,4 --seed $s --out /work/scratch/d07/$tag-$name-s$s --json > /work/scratch/d07/$tag-$name-s$s.json 2>/work/scratch/d07/$tag-$name-s$s.err
  echo "$tag $name $s rc=$? $(date +%T)" >> /work/scratch/d07/done.txt
done
