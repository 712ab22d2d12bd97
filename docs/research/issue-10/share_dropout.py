# Train with the encoder's share of the open vector (W_o h_t) dropped for whole rows with probability P
# in training, so the recency path must rank on its own: python share_dropout.py DATA KIND SEED P
import sys, torch
torch.set_num_threads(1)
import msli_core.models.msli as msli_mod
from train_once import train_once

data_path, kind, seed, p = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])


def open_vectors(self, window, table=None, kept_rows=None):  # kept_rows: the library's own state dropout, off
    table = self.item_table() if table is None else table
    states = self.open_out(self.encoder(table[window]))  # (B, T, d)
    if self.training and p > 0:
        keep = (torch.rand(states.shape[0], 1, 1) >= p).to(states.dtype) / (1 - p)
        states = states * keep
    return states + self.recent_path(window, table)


msli_mod.MSLIModel.open_vectors = open_vectors
train_once(data_path, kind, seed, {}, tag="share_dropout", p=p)
