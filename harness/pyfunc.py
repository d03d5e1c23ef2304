"""A trained harness network as an MLflow pyfunc model that loads anywhere MLflow does.

`save_pyfunc(model, path, X_example)` writes an MLflow model directory: the weights (`model.npz`, written by
RecurrentModel.save), this package's source (code_paths, so the loading process needs only MLflow and
NumPy), a tensor signature and the input example. In another process::

    import mlflow.pyfunc
    net = mlflow.pyfunc.load_model("runs:/<run id>/mlflow_model")   # or the directory's path
    Y_hat = net.predict(X)    # X (T, B, D) float64 -> exactly model.predict(X): (T, B, O) or (B, O) by mode

predict runs the network's own forward pass on the whole batch (sequences of equal length: no mask), so it
returns the same bits as `model.predict(X)`.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

WEIGHTS = "weights"
REQUIREMENTS = ("numpy", "mlflow", "cloudpickle")


class RecurrentNetwork(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper of a harness.nn network whose weights are the model's artifact "weights"."""

    def load_context(self, context: Any) -> None:
        from harness.nn import load_model

        self.network = load_model(context.artifacts[WEIGHTS])

    # No type hints: MLflow would read them as a schema of its own instead of the tensor signature.
    def predict(self, context, model_input, params=None):
        """X (T, B, D) -> the network's head outputs, as harness.nn's predict."""
        return self.network.predict(np.asarray(model_input))


def description(model: Any, X_example: np.ndarray) -> str:
    """What the model takes and returns, for the model's metadata and the run's page."""
    T, B, D = X_example.shape
    out = model.predict(X_example).shape
    return (f"{type(model).__name__} network ({model.config.get('mode')}, head {model.config.get('head')}) "
            f"from harness. Input: float64 array of shape (T, B, D) = (time steps, sequences, {D} features), "
            f"sequences of equal length; the input example has T={T}, B={B}. Output: float64 array of shape "
            f"{out} for the example (model.predict's). Load with mlflow.pyfunc.load_model(uri).predict(X).")


def _signature(model: Any, X_example: np.ndarray) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    out = model.predict(X_example)
    variable = (-1,) * (out.ndim - 1)  # every axis but the features' varies with T and B
    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float64), (-1, -1, X_example.shape[2]))]),
                          outputs=Schema([TensorSpec(out.dtype, (*variable, out.shape[-1]))]))


def save_pyfunc(model: Any, path: str | Path, X_example: np.ndarray) -> str:
    """Write model as an MLflow pyfunc model directory at path (which must not exist); returns its
    description. X_example (T, B, D): the input example (a few sequences)."""
    import harness

    X_example = np.ascontiguousarray(X_example, dtype=np.float64)
    text = description(model, X_example)
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "model.npz"
        model.save(str(weights))
        # The loading side needs only this module and harness.nn (which imports nothing else of harness).
        source, code = Path(harness.__file__).parent, Path(folder) / "harness"
        shutil.copytree(source / "nn", code / "nn", ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("__init__.py", "pyfunc.py"):
            shutil.copyfile(source / name, code / name)
        mlflow.pyfunc.save_model(
            str(path), python_model=RecurrentNetwork(), artifacts={WEIGHTS: str(weights)},
            code_paths=[str(code)], signature=_signature(model, X_example), input_example=X_example,
            pip_requirements=[f"{name}=={metadata.version(name)}" for name in REQUIREMENTS],
            metadata={"description": text, "harness_class": type(model).__name__})
    return text
