// What the fuzz tests (hostile-fuzz, store-fault-fuzz) share: the seeded generator (a failure
// replays from its printed seed), the watch for unhandled rejections, and how a run reports.

/** mulberry32: small, fast, and the same sequence for the same seed everywhere. */
export function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return {
    next,
    int,
    pick: <T>(items: readonly T[]): T => items[int(items.length)] as T,
    chance: (p: number) => next() < p,
  };
}

export type Rng = ReturnType<typeof prng>;

/** Rejections nobody handled while a fuzz run is under way: each is a failure of the run. */
export function watchUnhandled(): { readonly unhandled: unknown[]; stop(): void } {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  return { unhandled, stop: () => process.off('unhandledRejection', onUnhandled) };
}

/** Prints a run's log, every round, when COFFER_FUZZ_LOG is set. */
export function printLog(log: readonly string[]): void {
  if (process.env.COFFER_FUZZ_LOG) console.log(log.join('\n'));
}

/** The error a fuzz run ends in: its round, the seed that replays it, its last 25 rounds. */
export function fuzzFailure(
  what: string,
  seed: number,
  round: number,
  log: readonly string[],
  err: unknown,
): Error {
  printLog(log);
  return new Error(
    `${what} failed at round ${round} with seed ${seed} (replay: COFFER_FUZZ_SEED=${seed}): ${
      (err as Error).message
    }\nlast rounds:\n${log.slice(-25).join('\n')}`,
    { cause: err },
  );
}
