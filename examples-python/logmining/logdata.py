"""The log-mining example's data: partition P is a deterministic stream of log lines (no files,
no dependencies), and the reference answer a test checks the framework against.

A line is ``LEVEL SERVICE WORD WORD WORD``: about 8% ``ERROR``, 12% ``WARN``, the rest ``INFO``;
the service and the words are drawn from small vocabularies. Partition P is the SplitMix64
stream seeded by P, so any Python (the component's, the host's) produces the same text.
"""

LEVELS = ("ERROR", "WARN", "INFO")
SERVICES = ("hdfs", "mysql", "auth", "api", "cache", "queue")
WORDS = (
    "timeout", "disk", "full", "refused", "connection", "reset", "slow", "retry",
    "lock", "denied", "read", "write", "replica", "lag", "quota", "exceeded",
)

_MASK = (1 << 64) - 1


def _splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & _MASK
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return state, z ^ (z >> 31)


def partition_text(partition, lines):
    """The text of ``partition``: ``lines`` lines, each ending in a newline."""
    state = partition
    out = []
    for _ in range(lines):
        state, r = _splitmix64(state)
        roll = r % 100
        level = LEVELS[0] if roll < 8 else LEVELS[1] if roll < 20 else LEVELS[2]
        r >>= 7
        service = SERVICES[r % len(SERVICES)]
        words = []
        for _ in range(3):
            r >>= 4
            words.append(WORDS[r % len(WORDS)])
        out.append(f"{level} {service} {' '.join(words)}\n")
    return "".join(out)


def reference_count(partitions, lines, term):
    """What the framework must find for ``term``: ERROR lines, over all partitions, with
    ``term`` as their service or one of their words. A plain scan of the text, independent of
    the executor's parsing and caching."""
    n = 0
    for p in range(partitions):
        for line in partition_text(p, lines).splitlines():
            fields = line.split(" ")
            if fields[0] == "ERROR" and term in fields[1:]:
                n += 1
    return n


if __name__ == "__main__":
    # `python3 logdata.py PARTITIONS LINES TERM...` prints `TERM=COUNT ...` (for tests).
    import sys

    parts, n = int(sys.argv[1]), int(sys.argv[2])
    print(" ".join(f"{t}={reference_count(parts, n, t)}" for t in sys.argv[3:]))
