"""min-char-rnn, reproduced: a character-level vanilla RNN trained on the bundled Shakespeare.

Karpathy's 112-line NumPy script writes its backward pass by hand; here the engine does it.
The settings are his: 100 hidden units, 25-character chunks with the hidden state carried from
one chunk to the next (truncated BPTT), the loss summed over a chunk, Adagrad with learning
rate 0.1, gradients clipped to [-5, 5], and a smooth loss that starts at 25 ln V. Samples are
printed as it trains.

    python examples/char_rnn.py --iterations 5000 --sample-every 1000
"""
import argparse

import numpy as np

from microgradrnn.training import CharRNN

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--iterations", type=int, default=2000)
parser.add_argument("--sample-every", type=int, default=500)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

model = CharRNN(seed=args.seed)
V = model.vocab.size
print(f"{V} distinct characters; the smooth loss starts at 25 ln V = {25 * np.log(V):.3f}")
history = model.train(args.iterations, sample_every=args.sample_every)
print(f"iteration {model.iteration}: smooth loss {history[0]:.3f} -> {history[-1]:.3f}")
print("----\n" + model.sample(300) + "\n----")
