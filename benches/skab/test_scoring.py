"""Checks of the SKAB scoring against values worked out by hand from its definition.
Run: python3 -m unittest discover -s benches/skab"""

import math
import unittest

import scoring


class Binary(unittest.TestCase):
    def test_counts_and_rates(self):
        truth = [0, 0, 1, 1, 1, 0, 0, 0]
        pred = [1, 0, 1, 0, 1, 0, 0, 0]
        r = scoring.outlier_scores([(truth, pred)])
        self.assertEqual((r["tp"], r["fp"], r["fn"], r["tn"]), (2, 1, 1, 4))
        self.assertEqual(r["f1"], round(2 / (2 + 1), 2))
        self.assertEqual(r["far"], 20.0)
        self.assertEqual(r["mar"], round(100 / 3, 2))

    def test_sums_over_files(self):
        r = scoring.outlier_scores([([1, 0], [1, 1]), ([1, 0], [0, 0])])
        self.assertEqual((r["tp"], r["fp"], r["fn"], r["tn"]), (1, 1, 1, 1))


class Changepoints(unittest.TestCase):
    def test_changes_of_a_prediction(self):
        self.assertEqual(scoring.changes([0, 1, 1, 0, 0, 1]), [1, 3, 5])
        self.assertEqual(scoring.changes([1, 1, 0]), [0, 2])
        self.assertEqual(scoring.changes([0, 0]), [])

    def test_overlapping_windows_are_cut_on_the_right(self):
        self.assertEqual(scoring.scoring_windows([100, 130], 60), [[100, 160], [160, 190]])
        self.assertEqual(scoring.scoring_windows([100, 200], 60), [[100, 160], [200, 260]])

    def test_curve_runs_from_a_tp_to_a_fp(self):
        self.assertAlmostEqual(scoring.curve(0.0, 1.0, -0.11), 1.0)
        self.assertAlmostEqual(scoring.curve(1.0, 1.0, -0.11), -0.11)
        self.assertAlmostEqual(scoring.curve(0.5, 1.0, -0.11), (1.0 - 0.11) / 2, places=2)
        self.assertGreater(scoring.curve(0.2, 1.0, -0.11), scoring.curve(0.4, 1.0, -0.11))

    def test_perfect_null_and_mixed(self):
        cps = [1000.0, 2000.0]
        self.assertEqual(scoring.nab_scores([(cps, cps)])["standard"], 100.0)
        null = scoring.nab_scores([(cps, [])])
        self.assertEqual((null["standard"], null["missed_cps"], null["fps"]), (0.0, 2, 0))
        # One detection at the start of the first window, one false positive, one miss:
        # S = 1 - 0.11 - 1, null = -2, perfect = 2 -> 100 * (S + 2) / 4.
        r = scoring.nab_scores([(cps, [1000.0, 1500.0])])
        self.assertEqual(r["standard"], round(100 * (1 - 0.11 - 1 + 2) / 4, 2))
        self.assertEqual((r["missed_cps"], r["fps"]), (1, 1))
        low_fn = (1 - 0.11 - 2 + 4) / 6
        self.assertEqual(r["low_fn"], round(100 * low_fn, 2))

    def test_only_the_first_detection_in_a_window_counts(self):
        r = scoring.nab_scores([([0.0], [0.0, 30.0, 59.0])])
        self.assertEqual((r["standard"], r["fps"]), (100.0, 0))

    def test_a_late_detection_is_worth_less(self):
        early = scoring.nab_scores([([0.0], [6.0])])["standard"]
        late = scoring.nab_scores([([0.0], [54.0])])["standard"]
        self.assertGreater(early, late)
        self.assertTrue(math.isfinite(late))


if __name__ == "__main__":
    unittest.main()
