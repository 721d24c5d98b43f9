"""The Table I scaling rule against the paper's printed values."""

import pytest

from spzoo.data import scale_settings

# Table I (visual datasets): N_DS, channels C_DS used by the rule (greyscale
# EMNIST/CROHME count as 1), printed N_F and N_S.
TABLE_I = {
    "CIFAR-10": (50_000, 3, 16, 3900),
    "CIFAR-100": (50_000, 3, 16, 3900),
    "EMNIST": (700_000, 1, 19, 14600),
    "CROHME": (300_000, 1, 13, 9600),
    "Paintings": (7_000, 3, 6, 1400),
    "Wikiart": (64_000, 3, 18, 4400),
}


@pytest.mark.parametrize("name", sorted(TABLE_I))
def test_table_one(name):
    """N_F and N_S from the rule match Table I within its rounding.

    The table prints N_DS rounded (e.g. "7,000", "700,000"), so its N_F and
    N_S can differ from the rule on the printed N_DS by the rounding of
    N_DS: N_F by at most 1 filter, N_S by at most 5% (Paintings: the rule
    gives 1459 on 7,000 examples; 1400 needs about 6,450).
    """
    n, channels, filters, steps = TABLE_I[name]
    scaled = scale_settings(n, channels)
    assert abs(scaled.filters - filters) <= 1.0
    assert abs(scaled.steps - steps) <= 0.05 * steps


def test_table_one_exact_where_n_ds_is_exact_enough():
    # With N_DS as printed, rounding N_F to an integer and N_S to hundreds
    # reproduces the table for these datasets exactly.
    for name in ("CIFAR-10", "CIFAR-100", "CROHME", "Wikiart"):
        n, channels, filters, steps = TABLE_I[name]
        scaled = scale_settings(n, channels)
        assert (scaled.num_filters, scaled.num_steps) == (filters, steps), name
    # EMNIST's N_S (14593 -> 14600) and Paintings' N_F (5.99 -> 6) too.
    assert scale_settings(700_000, 1).num_steps == 14600
    assert scale_settings(7_000, 3).num_filters == 6


def test_reference_and_bad_arguments():
    ref = scale_settings(50_000, 3)
    assert (ref.filters, ref.steps) == (16.0, 3900.0)
    assert scale_settings(200_000, 3).steps == pytest.approx(7800.0)
    with pytest.raises(ValueError, match="num_examples"):
        scale_settings(0, 3)
    with pytest.raises(ValueError, match="channels"):
        scale_settings(10, -1)


# Table I (audio datasets): N_DS and the printed N_F. The text's N_S row for
# audio did not survive extraction.
TABLE_I_AUDIO = {
    "Commands": (85_000, 20),
    "Vocalset": (3_500, 4),
    "ESC": (2_000, 4),
    "Urbansound": (8_000, 6),
    "GTZAN": (1_000, 3),
    "FMA": (25_000, 12),
}


@pytest.mark.parametrize("name", sorted(TABLE_I_AUDIO))
def test_table_one_audio_filters_without_channel_factor(name):
    """The audio N_F follow the square-root rule with C_DS/C_C = 1.

    With the formula's 1/3 for one-channel spectrograms, Commands would get
    about 7 filters, not the printed 20; without it every audio N_F is
    within one filter of 16 * sqrt(N_DS / 50000).
    """
    n, filters = TABLE_I_AUDIO[name]
    assert abs(scale_settings(n, channels=3).filters - filters) < 1.0
    assert abs(scale_settings(n, channels=1).filters - filters) > 1.0
