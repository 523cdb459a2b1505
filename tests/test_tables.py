"""wna.tables.glue_items: one rule that names a table's cells for the notebooks' glue."""

import pandas as pd
import pytest

from wna.tables import glue_items


def test_rows_and_columns_name_the_cells_with_plain_types():
    t = pd.DataFrame({"left": [2, 0], "median": [-0.12345, 0.5]},
                     index=pd.MultiIndex.from_tuples([("fc1", "increase"), ("fc1", "decrease")]))
    items = glue_items(t, ["left", "median"], digits=3)
    assert items == {"fc1_increase_left": 2, "fc1_increase_median": -0.123, "fc1_decrease_left": 0,
                     "fc1_decrease_median": 0.5}
    assert type(items["fc1_increase_left"]) is int and type(items["fc1_increase_median"]) is float
    assert set(glue_items(t, ["left"], name="binary_{row}_{column}")) == {"binary_fc1_increase_left",
                                                                          "binary_fc1_decrease_left"}


def test_stems_by_column_and_formats():
    t = pd.DataFrame({"a": [1.23456, 2.0], "n": [1234, 5], "pair": ["01", "89"]}, index=["x", "y"])
    assert glue_items(t, {"A": "a", "N": "n"}, name="{column}_{row}", digits=2) == {
        "A_x": 1.23, "N_x": 1234, "A_y": 2.0, "N_y": 5}
    assert glue_items(t, {"N": "n"}, name="{column}_{row}", by="pair", fmt=",") == {"N_01": "1,234", "N_89": "5"}
    assert type(glue_items(t, {"N": "n"})["x_N"]) is int


def test_unknown_columns_and_clashing_names_are_refused():
    t = pd.DataFrame({"a": [1, 2]}, index=["x", "y"])
    with pytest.raises(ValueError, match=r"no column\(s\) \['b'\]"):
        glue_items(t, ["b"])
    with pytest.raises(ValueError, match="two cells would be glued as 'a'"):
        glue_items(t, ["a"], name="{column}")
