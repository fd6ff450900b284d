// Notes on the design
// -------------------
// Every random choice in controller and transport code (backoff jitter, fault jitter, nonces'
// companions such as connection ids) goes through a Random, so that the simulator can replay a
// run from its seed. Cryptographic nonces are the one exception: they always come from
// node:crypto (a handshake must never be predictable), and nothing decides on their value.
//
// SeededRandom is SplitMix64 reduced to 32-bit outputs: tiny, fast, and good enough for
// schedules; `fork(label)` derives an independent stream so adding a consumer does not shift
// the numbers every other consumer sees.

/** A source of uniform random numbers. */
export interface Random {
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [0, bound) for 1 <= bound <= 2^32. */
  int(bound: number): number;
}

class RealRandom implements Random {
  next(): number {
    return Math.random();
  }

  int(bound: number): number {
    return Math.floor(Math.random() * bound);
  }
}

/** Math.random, for real runs. */
export const realRandom: Random = new RealRandom();

const MASK64 = (1n << 64n) - 1n;

/** A deterministic Random from a seed (SplitMix64). */
export class SeededRandom implements Random {
  private state: bigint;

  constructor(readonly seed: number | bigint) {
    this.state = BigInt.asUintN(64, BigInt(seed));
  }

  private next64(): bigint {
    this.state = (this.state + 0x9e3779b97f4a7c15n) & MASK64;
    let z = this.state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
    return z ^ (z >> 31n);
  }

  /** 32 random bits as an unsigned integer. */
  uint32(): number {
    return Number(this.next64() >> 32n);
  }

  next(): number {
    return this.uint32() / 2 ** 32;
  }

  int(bound: number): number {
    if (!Number.isInteger(bound) || bound < 1 || bound > 2 ** 32) {
      throw new RangeError(`bound must be an integer from 1 to 2^32, got ${bound}`);
    }
    return Math.floor(this.next() * bound);
  }

  /** An independent stream derived from this seed and a label. */
  fork(label: string): SeededRandom {
    let hash = 0xcbf29ce484222325n;
    for (const char of label) {
      hash = ((hash ^ BigInt(char.codePointAt(0) as number)) * 0x100000001b3n) & MASK64;
    }
    return new SeededRandom(BigInt.asUintN(64, BigInt(this.seed) ^ hash));
  }
}
