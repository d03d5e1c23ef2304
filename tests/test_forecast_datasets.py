"""harness.forecast.datasets and label splits: statsmodels' real series with their dates and source, CSV
series with one-line errors, splits by date or index without leakage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from harness.forecast.datasets import ALL_SERIES_NAMES, REAL_SERIES, load_series, read_csv_series, real_series
from harness.forecast.series import SERIES_NAMES
from harness.forecast.splits import split_by_labels, split_from_spec


@pytest.mark.parametrize(
    ("name", "n", "first", "last"),
    [
        ("sunspots", 309, 1700, 2008),
        ("nile", 100, 1871, 1970),
        ("elnino", 732, np.datetime64("1950-01"), np.datetime64("2010-12")),
    ],
)
def test_real_series_keep_their_dates_and_source(name, n, first, last):
    series = real_series(name)
    assert (
        series.values.shape == (n,) and series.values.dtype == np.float64 and np.isfinite(series.values).all()
    )
    assert (
        series.index[0] == first
        and series.index[-1] == last
        and np.all(np.diff(series.index).astype(int) > 0)
    )
    assert Path(series.source).is_file() and series.source.endswith(f"{name}.csv")
    assert series.innovation_variance is None and series.oracle_mse(2) == [None, None]
    np.testing.assert_array_equal(load_series(name, n=5, seed=3).values, series.values)  # n and seed unused


def test_known_values_of_the_real_series():
    sunspots, nile, elnino = (real_series(name) for name in ("sunspots", "nile", "elnino"))
    raw = np.loadtxt(sunspots.source, delimiter=",", skiprows=1)  # the file itself: YEAR, SUNACTIVITY
    assert sunspots.values[sunspots.index == 1987][0] == raw[raw[:, 0] == 1987, 1][0]
    assert sunspots.values[0] == 5.0
    assert nile.values[0] == 1120.0
    assert elnino.values[1] == 24.20  # February 1950 (the file has one row per year, one column per month)


def test_series_names_and_parameters():
    assert set(ALL_SERIES_NAMES) == {*SERIES_NAMES, *REAL_SERIES, "csv"}
    with pytest.raises(ValueError, match=r"^real series 'nile' takes no parameters, got \['sigma'\]$"):
        load_series("nile", sigma=2.0)
    with pytest.raises(ValueError, match=r"^series must be among .*, got 'lynx'$"):
        load_series("lynx")
    with pytest.raises(ValueError, match=r"^unknown csv field\(s\) \['column'\]"):
        load_series("csv", path="x.csv", column="y")


def test_csv_series_with_and_without_dates(tmp_path):
    file = tmp_path / "sales.csv"
    file.write_text("month,sales\n2020-01-01,1.5\n2020-02-01,2\n2020-03-01,-3.25\n2020-04-01,4\n")
    series = read_csv_series(str(file), "sales", "month")
    np.testing.assert_array_equal(series.values, [1.5, 2.0, -3.25, 4.0])
    assert series.index[0] == np.datetime64("2020-01-01") and series.source == str(file.resolve())
    assert read_csv_series(file, "sales").index is None and read_csv_series(
        file, "sales"
    ).labels.tolist() == [0, 1, 2, 3]
    lo, hi, split = split_from_spec(
        series.values,
        series.labels,
        {"train": ["2020-01-01", "2020-02-01"], "test": ["2020-03-01", "2020-03-31"]},
    )
    assert (lo, hi, split.train.tolist(), split.val.tolist(), split.test.tolist()) == (
        0,
        3,
        [1.5, 2.0],
        [],
        [-3.25],
    )


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        (None, {"value": "y"}, "csv.path: no such file"),
        ("t,y\n1,2\n", {"value": "y", "path": ""}, "csv.path must name a CSV file, got ''"),
        (
            "t,y\n1,2\n2,3\n3,4\n",
            {"value": "z"},
            "csv.value must be one of the columns ['t', 'y'] of data.csv, got 'z'",
        ),
        (
            "month,units\n1,2\n2,3\n3,4\n",
            {"value": "unit"},
            "csv.value must be one of the columns ['month', 'units'] of data.csv, got 'unit'; did you mean "
            "'units'?",
        ),
        (
            "t,y\n1,2\n2,x\n3,4\n",
            {"value": "y"},
            "csv.value: column 'y' of data.csv holds a non-numeric value 'x' (data row 2)",
        ),
        (
            "t,y\n1,2\n2,\n3,4\n",
            {"value": "y"},
            "csv.value: column 'y' of data.csv has 1 missing or non-finite value(s), the first at data row 2",
        ),
        (
            "t,y\n1,2\n2,nan\n3,4\n",
            {"value": "y"},
            "csv.value: column 'y' of data.csv has 1 missing or non-finite",
        ),
        (
            "t,y\n1,2\n2,3\n",
            {"value": "y"},
            "csv.value: column 'y' of data.csv has 2 value(s), needs at least 3",
        ),
        ("t,y\n1,2\n2,3\n3,4\n", {"value": "y", "date": "d"}, "csv.date must be one of the columns"),
        (
            "t,y\n2020-01-01,2\nsoon,3\n2020-03-01,4\n",
            {"value": "y", "date": "t"},
            "csv.date: column 't' of data.csv holds a value that is not a date: 'soon' (data row 2)",
        ),
        (
            "t,y\n2020-01-01,2\n2020-01-01,3\n2020-03-01,4\n",
            {"value": "y", "date": "t"},
            "csv.date: column 't' of data.csv must strictly increase",
        ),
    ],
)
def test_bad_csv_input_raises_one_line_naming_the_field(tmp_path, text, kwargs, message):
    file = tmp_path / "data.csv"
    if text is not None:
        file.write_text(text)
    with pytest.raises(ValueError) as raised:
        read_csv_series(**{"path": str(file), **kwargs})
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)


def test_split_by_years_is_the_classic_sunspot_split():
    sunspots = real_series("sunspots")
    lo, hi, split = split_by_labels(sunspots.values, sunspots.labels, [1700, 1920], None, [1921, 1987])
    assert (lo, hi, len(split.train), len(split.val), len(split.test)) == (0, 288, 221, 0, 67)
    np.testing.assert_array_equal(split.test, sunspots.values[221:288])
    lo, hi, split = split_by_labels(
        sunspots.values, sunspots.labels, [1750, 1900], [1901, 1920], [1921, 1930]
    )
    assert (lo, hi, split.train_end, split.val_end, len(split.test)) == (50, 231, 151, 171, 10)


def test_split_by_months_and_by_position():
    elnino = real_series("elnino")
    _, _, split = split_from_spec(
        elnino.values,
        elnino.labels,
        {"train": ["1950-01", "1999-12"], "val": ["2000-01", "2004-12"], "test": ["2005-01", "2010-12"]},
    )
    assert (split.train_end, split.val_end, len(split.test)) == (600, 660, 72)
    values = np.arange(100.0)
    lo, hi, split = split_from_spec(
        values, np.arange(100), {"train": [0, 59], "val": [60, 79], "test": [80, 89]}
    )
    assert (lo, hi, split.val_end) == (0, 90, 80)
    assert (
        split_from_spec(values, np.arange(100), {"train": 0.6, "val": None, "test": 0.4})[2].train_end == 60
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"train": [1700, 1920], "test": [1922, 1987]},
            "split.test must start right after split.train ends, at label 1921, got 1922",
        ),
        (
            {"train": [1700, 1920], "test": [2100, 2200]},
            "split.test=[2100, 2200] selects no point: the labels run from 1700 to 2008",
        ),
        ({"train": [1700, 1920], "test": 0.2}, "split parts must all be fractions or all be label ranges"),
        (
            {"train": [1700], "test": [1921, 1987]},
            "split.train must be a pair [first, last] of labels or a fraction",
        ),
        (
            {"train": ["a", 1920], "test": [1921, 1987]},
            "split.train bounds must be a number (index label), got 'a'",
        ),
        ({"train": [1700, 1920]}, "split must give train and test"),
        ({"train": [1700, 1920], "test": [1921, 1987], "holdout": 0.1}, "unknown split key(s) ['holdout']"),
    ],
)
def test_bad_label_splits_raise_one_line(spec, message):
    sunspots = real_series("sunspots")
    with pytest.raises(ValueError) as raised:
        split_from_spec(sunspots.values, sunspots.labels, spec)
    assert str(raised.value).startswith(message)
