"""Training: `epochs` (`fit`: scanned epochs of minibatch updates, optax optimizers and schedules), `lm`
(the language-model loop of the GPT: iterations, evaluation, sampling), `data` (the datasets),
`checkpoint` (saving and exact resume), `plot` (the curves)."""

from .epochs import (TrainingDiverged as TrainingDiverged, fit as fit, gradient_function as gradient_function,
                     make_optimizer as make_optimizer, make_schedule as make_schedule)
