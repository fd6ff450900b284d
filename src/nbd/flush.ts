// Notes on the design
// -------------------
// Flush group commit. One FlushCoordinator per volume, created by the NbdServer constructor and
// shared by every connection and export of that volume. A flush that is running may have started
// before a waiter's write, so waiters that arrive meanwhile share the next one: at most one
// volume.flush() runs at a time and at most one batch waits behind it. Every waiter is completed
// exactly once, through its connection's completeFlush, with the flush's error or null; a flush
// that throws synchronously is treated as a rejection. Waiters carry only the cookie and type
// they answer, never the decoder's (reused) request object.

import type { NbdVolume } from './types';
import type { NbdConnection } from './transmission';

/** Short name inside this module. */
type Volume = NbdVolume;

export interface FlushWaiter {
  connection: NbdConnection;
  cookieHigh: number;
  cookieLow: number;
  type: number;
}

export class FlushCoordinator {
  private running = false;
  private next: FlushWaiter[] = [];
  constructor(private readonly volume: Volume) {}

  /** Completes `waiter` after a flush that starts now or later. */
  request(waiter: FlushWaiter): void {
    this.next.push(waiter);
    if (!this.running) this.start();
  }

  /** A flush not tied to a request (server close). */
  async flushNow(): Promise<void> {
    await this.volume.flush();
  }

  private start(): void {
    const batch = this.next;
    this.next = [];
    this.running = true;
    let flushing: Promise<void>;
    try {
      flushing = this.volume.flush();
    } catch (error) {
      flushing = Promise.reject(error);
    }
    flushing.then(
      () => this.finish(batch, null),
      (error: unknown) => this.finish(batch, error),
    );
  }

  private finish(batch: FlushWaiter[], error: unknown): void {
    this.running = false;
    for (const waiter of batch) waiter.connection.completeFlush(waiter, error);
    if (this.next.length > 0) this.start();
  }
}
