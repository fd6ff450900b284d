// Notes on the design
// -------------------
// The open /events responses of an admin endpoint (server.ts): NDJSON, one event a line, first
// the current state (target.currentEvents()), then every later event (target.subscribe) until the
// reader goes away, the server closes, or (?now=1) at once after the current ones. The server
// never buffers without bound for a slow reader: a stream that lets more than
// maxEventBufferBytes pile up in its response is ended with a last line {"kind":"overflow"}.
//
// Ownership: EventStreams owns the set of open streams and each stream's subscription; ending a
// stream (for any reason, once) unsubscribes it, removes it from the set and ends its response.
// Errors: an event that is not JSON is skipped and logged; a failing unsubscribe is logged;
// nothing here throws at a reader.

import type * as http from 'node:http';

import { type AdminLogger, OVERFLOW_LINE } from './server-options';
import type { EventStream } from './server-http';
import type { ArrayEvent, ArrayEventListener } from './target';

/** The open /events streams of one admin server. */
export class EventStreams {
  private readonly streams = new Set<EventStream>();

  constructor(private readonly log: AdminLogger, private readonly maxEventBufferBytes: number) {}

  /** Open /events streams. */
  get size(): number {
    return this.streams.size;
  }

  /**
   * Starts an /events response: the headers, the `current` events, then (unless `now`) every
   * event `subscribe` delivers, until the stream ends.
   */
  open(response: http.ServerResponse, current: readonly ArrayEvent[], now: boolean, subscribe: (listener: ArrayEventListener) => () => void): void {
    response.writeHead(200, {
      'Content-Type': 'application/x-ndjson; charset=utf-8',
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      // A stream ends its connection: nothing else would follow on it.
      Connection: 'close',
    });
    response.flushHeaders();
    const stream: EventStream = { response, unsubscribe: undefined, ended: false };
    this.streams.add(stream);
    // 'close' on the response: it finished, or the reader went away (the request's own 'close'
    // fires as soon as its empty body is read, so it says nothing about the reader).
    response.once('close', () => this.endStream(stream));
    for (const event of current) {
      if (!this.writeEvent(stream, event)) return;
    }
    if (now) {
      this.endStream(stream);
      return;
    }
    // Same tick as currentEvents(): no event can fall between the two.
    stream.unsubscribe = subscribe((event) => {
      try {
        this.writeEvent(stream, event);
      } catch (error) {
        this.log.error({ err: error }, 'admin endpoint: could not write an event');
      }
    });
    if (stream.ended) this.unsubscribe(stream);
  }

  /** Ends every open stream (the server is closing). */
  endAll(): void {
    for (const stream of [...this.streams]) this.endStream(stream);
  }

  /** Writes one NDJSON line; ends the stream with an overflow line past maxEventBufferBytes. */
  private writeEvent(stream: EventStream, event: ArrayEvent): boolean {
    if (stream.ended) return false;
    const response = stream.response;
    if (response.destroyed || response.writableEnded) {
      this.endStream(stream);
      return false;
    }
    let line: string;
    try {
      line = `${JSON.stringify(event)}\n`;
    } catch (error) {
      this.log.error({ err: error, subject: event?.subject }, 'admin endpoint: an event is not JSON; skipped');
      return true;
    }
    response.write(line);
    if (response.writableLength > this.maxEventBufferBytes) {
      this.log.warn({ bufferedBytes: response.writableLength, limit: this.maxEventBufferBytes },
        'admin endpoint: an /events reader fell behind; its stream is ended');
      this.endStream(stream, OVERFLOW_LINE);
      return false;
    }
    return true;
  }

  private endStream(stream: EventStream, lastLine?: string): void {
    if (stream.ended) return;
    stream.ended = true;
    this.unsubscribe(stream);
    this.streams.delete(stream);
    const response = stream.response;
    if (!response.destroyed && !response.writableEnded) {
      if (lastLine === undefined) response.end();
      else response.end(lastLine);
    }
  }

  private unsubscribe(stream: EventStream): void {
    const unsubscribe = stream.unsubscribe;
    stream.unsubscribe = undefined;
    if (unsubscribe === undefined) return;
    try {
      unsubscribe();
    } catch (error) {
      this.log.error({ err: error }, 'admin endpoint: unsubscribe failed');
    }
  }
}
