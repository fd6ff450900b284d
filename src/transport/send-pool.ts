// Notes on the design
// -------------------
// A few large send buffers that a sender reuses instead of allocating one per message. A
// primary pair ships its journal in PAIR_RECORDS messages of up to maxBatchBytes (1 MiB): a
// fresh buffer for each is external memory V8 must collect (at 800 MB/s of 64 KiB writes the
// collector's threads took about a third of the primary's CPU) and fresh pages the kernel must
// fault in (malloc hands blocks that large straight to mmap and back). Measured in bench/README
// (pair exports, large writes).
//
// take() lends a buffer of `bufferBytes` (a free one, else a new one) while fewer than
// `maxLent` are out, and undefined past that: the caller then allocates as before, so a
// back-pressured socket holding many small messages never pins many large buffers. give()
// takes a lent buffer back; the caller gives it when the link's onWritten says nothing reads
// it any more (wire.ts), or at once when it did not send it. A buffer that never comes back
// (a sender that lost it) only costs an allocation: the pool never reuses what it did not get
// back. Pure, no timers.

/** Counters of a SendPool. */
export interface SendPoolStats {
  bufferBytes: number;
  /** Buffers lent and not given back. */
  lent: number;
  /** Buffers free in the pool. */
  free: number;
  /** take() calls answered from the free list, with a new buffer, and refused (maxLent). */
  reused: number;
  allocated: number;
  refused: number;
}

export class SendPool {
  private static readonly sharedPools = new Map<number, SendPool>();

  /**
   * The process's pool of `bufferBytes` buffers, shared by every sender of that size (all pairs
   * with the default batch size): at most 8 lent and 8 free, so a process with a thousand pairs
   * (the simulator) still holds a few megabytes, not one pool's worth per pair.
   */
  static shared(bufferBytes: number): SendPool {
    let pool = SendPool.sharedPools.get(bufferBytes);
    if (pool === undefined) {
      pool = new SendPool(bufferBytes, 8);
      SendPool.sharedPools.set(bufferBytes, pool);
    }
    return pool;
  }

  private readonly freeBuffers: Buffer[] = [];
  private readonly lentBuffers = new Set<Buffer>();
  private reused = 0;
  private allocated = 0;
  private refused = 0;
  private closed = false;

  constructor(readonly bufferBytes: number, readonly maxLent = 4) {
    if (!Number.isSafeInteger(bufferBytes) || bufferBytes < 1) throw new RangeError(`bufferBytes must be a positive integer, got ${bufferBytes}`);
    if (!Number.isSafeInteger(maxLent) || maxLent < 1) throw new RangeError(`maxLent must be a positive integer, got ${maxLent}`);
  }

  /** A buffer of bufferBytes the caller may fill, or undefined when maxLent are out. */
  take(): Buffer | undefined {
    if (this.lentBuffers.size >= this.maxLent) {
      this.refused++;
      return undefined;
    }
    let buffer = this.closed ? undefined : this.freeBuffers.pop();
    if (buffer === undefined) {
      // Slow: outside Node's small-buffer pool, a block of its own that lives as long as the pool.
      buffer = Buffer.allocUnsafeSlow(this.bufferBytes);
      this.allocated++;
    } else {
      this.reused++;
    }
    this.lentBuffers.add(buffer);
    return buffer;
  }

  /** Takes back a buffer take() lent; anything else, or a second give, is ignored. */
  give(buffer: Buffer): void {
    if (!this.lentBuffers.delete(buffer) || this.closed) return;
    this.freeBuffers.push(buffer);
  }

  /** Drops the free buffers; lent ones are dropped as they come back, and take() allocates without keeping. */
  close(): void {
    this.closed = true;
    this.freeBuffers.length = 0;
  }

  stats(): SendPoolStats {
    return {
      bufferBytes: this.bufferBytes, lent: this.lentBuffers.size, free: this.freeBuffers.length,
      reused: this.reused, allocated: this.allocated, refused: this.refused,
    };
  }
}
