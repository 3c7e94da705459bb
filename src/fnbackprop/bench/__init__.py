"""`fnbackprop bench`: `timing` (interleaved rounds, medians, per-round ratios, op profiles, the matmul
limit), `mlp` (the MLP grid and Nielsen's epoch), `conv` (the conv network's step), `gpt` (the GPT's
step), `memory` (blockwise attention and the chunked head against T)."""
