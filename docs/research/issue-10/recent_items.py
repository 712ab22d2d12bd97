# python recent_items.py DATA SEED K M: the package's MS-LI with recent_items = M, one thread; test and
# validation NDCG@10, the learned r_j and (with a ground truth) explanation accuracy (train_once.py). Run
# with PYTHONPATH at the checkout to measure (a worktree with another default, for example).
import sys
import torch
torch.set_num_threads(1)
from train_once import train_once

path, seed, K, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
train_once(path, "msli", seed, {"segments": K, "recent_items": m}, K=K, m=m,
           report=lambda model: {"r": [round(float(x), 3) for x in model.recent_weights.detach()]})
