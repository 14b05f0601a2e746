"""Each finding's test on simulated experiments: its false-decision rate with no true effect, and its
power (how often it holds) with an effect of the paper's size, at 3 and 6 seeds per cell and seed noise
of 1.3 and 3.0 points (our runs' median and largest seed std). Prints a markdown table (README, findings).

    .venv/bin/python benchmarks/findings_power.py [--trials 400]

The scenarios are defined in cldst/analysis/calibration.py; tests/test_findings_calibration.py asserts the
null rates. About 4 minutes at 400 trials on this 2-core CPU.
"""

from __future__ import annotations

import argparse

from cldst.analysis import calibration as cal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    args = parser.parse_args()
    print("| finding | false decisions, no effect (3 seeds; scenarios) | power: planted | 3 seeds, std 1.3 / 3.0 "
          "| 6 seeds, std 1.3 / 3.0 |")
    print("|:--|:--|:--|:--|:--|")
    for i, finding in enumerate(cal.NULLS):
        nulls = [cal.simulate(finding, sc, sg, 3, args.trials, seed=1000 + 10 * i + j)
                 for j, (sc, sg) in enumerate((sc, sg) for sc in cal.NULLS[finding] for sg in cal.SIGMAS)]
        decided = sum(r.decided * r.trials for r in nulls) / sum(r.trials for r in nulls)
        power = {(seeds, sg): cal.simulate(finding, cal.POWER[finding], sg, seeds, args.trials, seed=2000 + i).holds
                 for seeds in (3, 6) for sg in cal.SIGMAS}
        planted = "paper's Table 3 means" if cal.POWER[finding] == "paper" else f"+{cal.PLANTED:g} points"
        print(f"| {finding} | {decided:.1%} of {sum(r.trials for r in nulls)} ({', '.join(cal.NULLS[finding])}) | "
              f"{planted} | {power[3, 1.3]:.0%} / {power[3, 3.0]:.0%} | {power[6, 1.3]:.0%} / {power[6, 3.0]:.0%} |",
              flush=True)


if __name__ == "__main__":
    main()
