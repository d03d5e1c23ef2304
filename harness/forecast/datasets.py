"""Real series: the classic ones shipped inside statsmodels (nothing is downloaded) and any CSV column.

load_series(name, n, seed, **params) is the one entry point of the comparison: a generated series
(harness.forecast.series), a real one (REAL_SERIES: no parameters, n and seed unused) or "csv" (path, value
column, optional date column). Real series keep their dates as Series.index (years as int64, months as
datetime64[M]), their source file as Series.source, and have no known optimum (innovation_variance None).

Bad input raises ValueError in one line naming the field (csv.path, csv.value, csv.date) and what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from harness.config import suggestion
from harness.forecast.series import SERIES_NAMES, Series, make_series

MIN_POINTS = 3
REAL_SERIES: dict[str, str] = {
    "sunspots": "yearly mean sunspot numbers 1700-2008 (statsmodels.api.datasets.sunspots, SUNACTIVITY)",
    "nile": "yearly Nile flow at Aswan 1871-1970, 10^8 m^3 (statsmodels.api.datasets.nile, volume)",
    "elnino": "monthly sea surface temperature, Nino 1+2 region, 1950-2010 (statsmodels.api.datasets.elnino)",
}
ALL_SERIES_NAMES: tuple[str, ...] = (*SERIES_NAMES, *REAL_SERIES, "csv")
CSV_FIELDS = ("path", "value", "date")


def _module_file(module: Any, file_name: str) -> str:
    return str(Path(module.__file__).resolve().parent / file_name)


def real_series(name: str) -> Series:
    """The real series name (one of REAL_SERIES) with its dates as index and its source file."""
    import statsmodels.api as sm

    if name not in REAL_SERIES:
        raise ValueError(f"real series name must be one of {sorted(REAL_SERIES)}, got {name!r}")
    module = getattr(sm.datasets, name)
    data = module.load_pandas().data
    if name == "sunspots":
        index, values = data["YEAR"].to_numpy().astype(np.int64), data["SUNACTIVITY"].to_numpy()
    elif name == "nile":
        index, values = data["year"].to_numpy().astype(np.int64), data["volume"].to_numpy()
    else:  # one row per year, one column per month: read row by row
        months = data.columns[1:]
        values = data[months].to_numpy().reshape(-1)
        first = np.datetime64(f"{int(data['YEAR'].iloc[0])}-01", "M")
        index = first + np.arange(len(values)).astype("timedelta64[M]")
    return Series(
        values=np.asarray(values, dtype=np.float64),
        name=name,
        innovation_variance=None,
        true_params=None,
        params={"name": name},
        index=index,
        source=_module_file(module, f"{name}.csv"),
    )


def read_csv_series(path: Any = None, value: Any = None, date: Any = None) -> Series:
    """The column value of the CSV file at path as a Series, indexed by column date when given.

    The values must all be numbers (no empty cell, no NaN); dates must parse and strictly increase; at least
    MIN_POINTS rows. Every problem raises ValueError naming csv.path, csv.value or csv.date.
    """
    import pandas as pd

    if not isinstance(path, str | Path) or not str(path):
        raise ValueError(f"csv.path must name a CSV file, got {path!r}")
    file = Path(path).expanduser().resolve()
    if not file.is_file():
        raise ValueError(f"csv.path: no such file {str(file)!r}")
    try:
        frame = pd.read_csv(file)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"csv.path: cannot read {str(file)!r} as CSV: {first_line}") from None
    columns = [str(c) for c in frame.columns]
    for field_name, column in (("value", value), ("date", date)):
        if (column is not None or field_name == "value") and column not in columns:
            raise ValueError(f"csv.{field_name} must be one of the columns {columns} of {file.name}, got "
                             f"{column!r}{suggestion(column, columns)}")
    raw = frame[value]
    numbers = pd.to_numeric(raw, errors="coerce")
    bad = numbers.isna() & raw.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"csv.value: column {value!r} of {file.name} holds a non-numeric value "
            f"{raw.iloc[row]!r} (data row {row + 1})"
        )
    missing = ~np.isfinite(numbers.to_numpy(dtype=np.float64))
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise ValueError(
            f"csv.value: column {value!r} of {file.name} has {int(missing.sum())} missing or "
            f"non-finite value(s), the first at data row {row + 1}: fill or drop them first"
        )
    if len(numbers) < MIN_POINTS:
        raise ValueError(
            f"csv.value: column {value!r} of {file.name} has {len(numbers)} value(s), "
            f"needs at least {MIN_POINTS}"
        )
    index = None
    if date is not None:
        dates = pd.to_datetime(frame[date], errors="coerce")
        if dates.isna().any():
            row = int(np.flatnonzero(dates.isna().to_numpy())[0])
            raise ValueError(
                f"csv.date: column {date!r} of {file.name} holds a value that is not a date: "
                f"{frame[date].iloc[row]!r} (data row {row + 1})"
            )
        index = dates.to_numpy().astype("datetime64[s]")
        if not np.all(np.diff(index) > np.timedelta64(0, "s")):
            raise ValueError(
                f"csv.date: column {date!r} of {file.name} must strictly increase (sorted, no repeated date)"
            )
    return Series(
        values=numbers.to_numpy(dtype=np.float64),
        name="csv",
        innovation_variance=None,
        true_params=None,
        params={"name": "csv", "path": str(file), "value": value, "date": date},
        index=index,
        source=str(file),
    )


def load_series(name: str, n: int = 1000, seed: int = 0, **params: Any) -> Series:
    """Series name: generated (make_series(name, n, seed, **params)), real (no params) or "csv" (params:
    path, value, date; see read_csv_series)."""
    if name in REAL_SERIES:
        if params:
            raise ValueError(f"real series {name!r} takes no parameters, got {sorted(params)}")
        return real_series(name)
    if name == "csv":
        unknown = sorted(set(params) - set(CSV_FIELDS))
        if unknown:
            raise ValueError(f"unknown csv field(s) {unknown}; allowed: {list(CSV_FIELDS)}")
        return read_csv_series(**params)
    if name not in SERIES_NAMES:
        raise ValueError(f"series must be among {sorted(ALL_SERIES_NAMES)}, got {name!r}")
    return make_series(name, n=n, seed=seed, **params)
