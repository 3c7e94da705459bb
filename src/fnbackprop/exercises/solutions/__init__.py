"""Reference solutions of the exercises, one module per exercise (read as text by `fnbackprop.exercises`)."""
