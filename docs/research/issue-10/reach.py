"""What MS-LI's closed slots could add over the two-tower model, counted before training.

    python docs/research/issue-10/reach.py /work/data/ml-100k sample_data /work/data/synth3k
    python docs/research/issue-10/reach.py --drafts     # two long-history drafts of the sample generator

Prints msli_core.quality.closed_reach's sentence for MS-LI K=4 (README defaults) on each dataset.
"""

import sys

from msli_core.data.dataset import leave_one_out
from msli_core.data.formats import load_dataset
from msli_core.data.synth import SynthConfig, generate, to_dataset
from msli_core.quality import closed_reach, reach_sentence

DRAFT = {"users": 300, "interactions": 120_000, "max_events": 800, "interests": 40, "items": 4000}

if sys.argv[1:] == ["--drafts"]:
    for return_prob in (0.1, 0.35):
        data = to_dataset(generate(SynthConfig(**DRAFT, return_prob=return_prob)))
        print(f"draft, return_prob {return_prob}:", reach_sentence(closed_reach(leave_one_out(data), [4])[0]))
else:
    for path in sys.argv[1:]:
        print(f"{path}:", reach_sentence(closed_reach(leave_one_out(load_dataset(path)), [4])[0]))
