"""Serving a trained model: a run or the shipped model as a scorer (inference), the Python API
(api, behind `jaxvqa.load`), `jax.export` files and their jax-only loader (export, exported) and
`jaxvqa doctor` (doctor)."""
