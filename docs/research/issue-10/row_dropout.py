# Like state_dropout, but a dropped row loses the encoder's whole say: the open vector's share W_o h_t
# AND its closed slots, so dropped rows are the recency path alone in MS-LI as in the two-tower model:
# python row_dropout.py DATA KIND SEED P
import sys, torch
torch.set_num_threads(1)
import msli_core.models.msli as msli_mod
import msli_core.train as train_mod
from train_once import train_once

data_path, kind, seed, p = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
KEEP = {}


def open_vectors(self, window, table=None, kept_rows=None):  # kept_rows: the library's own state dropout, off
    table = self.item_table() if table is None else table
    shares = self.open_out(self.encoder(table[window]))  # (B, T, d)
    if self.training and p > 0:
        keep = torch.rand(shares.shape[0]) >= p  # (B,)
        KEEP["rows"] = keep
        shares = shares * keep.view(-1, 1, 1).to(shares.dtype) / (1 - p)
    return shares + self.recent_path(window, table)


_closed_statistics = train_mod.closed_statistics


def closed_statistics(scores, logits, valid, bias):
    keep = KEEP.pop("rows", None)
    if keep is not None:
        valid = valid & keep.view(-1, *([1] * (valid.dim() - 1)))
    return _closed_statistics(scores, logits, valid, bias)


msli_mod.MSLIModel.open_vectors = open_vectors
train_mod.closed_statistics = closed_statistics
train_once(data_path, kind, seed, {}, tag="row_dropout", p=p)
