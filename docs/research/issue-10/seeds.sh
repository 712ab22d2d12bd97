#!/bin/bash
# usage: seeds.sh TAG "ARGS" seeds...
tag=$1; args=$2; shift 2
for s in "$@"; do /work/main/.venv/bin/python /work/exp/exp.py $args --seed $s --save /work/exp/m_${tag}_s$s.pt > /work/exp/logs/${tag}_s$s.log 2>&1; done
