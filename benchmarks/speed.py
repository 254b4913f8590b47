"""Images/s and peak memory: plain fp32 pipeline vs mixkd defaults (cold, warm cache at PMU 10%).

    flock /tmp/mixkd-bench.lock python benchmarks/speed.py step --rounds 3 --steps 10
    flock /tmp/mixkd-bench.lock python benchmarks/speed.py epoch --pairs r110-r20 --batches 60 \
        --data-root ../shared/data/cifar10-jpg.zip

The same as `mixkd bench ...`; prints a Markdown table naming the machine.
"""

import sys

from mixkd.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
