"""Derive-it-yourself exercises, graded by the checker with a diagnosis in a student's words.

    fnbackprop exercise list                 the catalogue
    fnbackprop exercise start NAME [--dir D] writes D/NAME.py: the layer's init, forward and an empty backward
    fnbackprop exercise check FILE [--hint]  the forward confirmed, then each gradient pass or fail, with the kind of mistake

Each exercise's reference solution is `fnbackprop/exercises/solutions/NAME.py` (the test suite checks
that every one passes, and that planted mistakes fail with their kind named).
"""

from .catalogue import BATCH as BATCH, EXERCISES as EXERCISES, Exercise as Exercise, Slip as Slip
from .grading import (ExerciseError as ExerciseError, Grade as Grade, grade as grade, next_hint as next_hint,
                      solution_source as solution_source, start as start, template_source as template_source)
