// A small raw NBD client for tests: it speaks the wire format by hand (encoders of
// src/nbd/protocol.ts for what a client sends, its own parsing of what a server sends), so a
// test can send anything, including garbage, and see exactly what came back.

import { strict as assert } from 'node:assert';
import * as net from 'node:net';

import * as P from '../../src/nbd/protocol';

export type Endpoint = { host?: string; port: number } | { path: string };

export interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
}

export interface ReplyChunk {
  flags: number;
  type: number;
  payload: Buffer;
}

export interface Reply {
  cookie: bigint;
  /** Simple reply error, or the first error chunk's error; 0 on success. */
  error: number;
  /** Simple reply: the data of a READ. Structured: the data reassembled from OFFSET_DATA/HOLE chunks. */
  data: Buffer | null;
  structured: boolean;
  chunks: ReplyChunk[];
  /** Structured error messages. */
  messages: string[];
}

export interface HandshakeOptions {
  exportName?: string;
  structured?: boolean;
  /** Queries for NBD_OPT_SET_META_CONTEXT (needs structured). */
  metaContexts?: string[];
  /** Use NBD_OPT_EXPORT_NAME instead of NBD_OPT_GO. */
  exportNameOption?: boolean;
  clientFlags?: number;
}

export interface HandshakeResult {
  sizeBytes: number;
  transmissionFlags: number;
  blockSize: { minimum: number; preferred: number; maximum: number } | null;
  contexts: Map<string, number>;
  infos: Buffer[];
}

interface Pending {
  cookie: bigint;
  type: number;
  offset: number;
  length: number;
  chunks: ReplyChunk[];
  resolve: (reply: Reply) => void;
  reject: (error: Error) => void;
}

/** Reads exact byte counts from a socket. */
class Reader {
  private buffered: Buffer[] = [];
  private length = 0;
  private waiter: { byteLength: number; resolve: (bytes: Buffer) => void; reject: (error: Error) => void } | null = null;
  private ended: Error | null = null;

  constructor(socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered.push(chunk);
      this.length += chunk.length;
      this.serve();
    });
    const end = (error?: Error) => {
      this.ended = error ?? new Error('connection closed');
      this.serve();
    };
    socket.on('end', () => end());
    socket.on('close', () => end());
    socket.on('error', (error) => end(error));
  }

  read(byteLength: number): Promise<Buffer> {
    assert.equal(this.waiter, null, 'one read at a time');
    return new Promise((resolve, reject) => {
      this.waiter = { byteLength, resolve, reject };
      this.serve();
    });
  }

  get closed(): boolean {
    return this.ended !== null;
  }

  private serve(): void {
    const waiter = this.waiter;
    if (waiter === null) return;
    if (this.length >= waiter.byteLength) {
      const all = Buffer.concat(this.buffered);
      this.buffered = [all.subarray(waiter.byteLength)];
      this.length = all.length - waiter.byteLength;
      this.waiter = null;
      waiter.resolve(all.subarray(0, waiter.byteLength));
    } else if (this.ended !== null) {
      this.waiter = null;
      waiter.reject(this.ended);
    }
  }
}

export class NbdTestClient {
  readonly socket: net.Socket;
  private readonly reader: Reader;
  private readonly closedPromise: Promise<void>;
  private structured = false;
  private nextCookie = 1n;
  private readonly pending = new Map<bigint, Pending>();
  private readLoopRunning = false;
  private readLoopError: Error | null = null;
  sizeBytes = 0;
  transmissionFlags = 0;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.reader = new Reader(socket);
    this.closedPromise = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
  }

  static connect(endpoint: Endpoint): Promise<NbdTestClient> {
    return new Promise((resolve, reject) => {
      const socket =
        'path' in endpoint ? net.connect({ path: endpoint.path }) : net.connect({ host: endpoint.host ?? '127.0.0.1', port: endpoint.port });
      socket.setNoDelay(true);
      socket.once('connect', () => resolve(new NbdTestClient(socket)));
      socket.once('error', reject);
    });
  }

  /** Connects and completes the handshake. */
  static async open(endpoint: Endpoint, options: HandshakeOptions = {}): Promise<NbdTestClient & { handshakeResult: HandshakeResult }> {
    const client = await NbdTestClient.connect(endpoint);
    const result = await client.handshake(options);
    return Object.assign(client, { handshakeResult: result });
  }

  // --- raw access ----------------------------------------------------------------------------

  send(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Sends `bytes` cut at `cuts` (increasing offsets, the last its length), pausing `pauseMs` after each piece. */
  async sendInPieces(bytes: Uint8Array, cuts: readonly number[], pauseMs = 10): Promise<void> {
    let sentTo = 0;
    for (const cut of cuts) {
      this.send(bytes.subarray(sentTo, cut));
      sentTo = cut;
      await new Promise((resolve) => setTimeout(resolve, pauseMs));
    }
  }

  read(byteLength: number): Promise<Buffer> {
    return this.reader.read(byteLength);
  }

  /** Resolves when the server closed the connection. */
  closed(): Promise<void> {
    return this.closedPromise;
  }

  get isClosed(): boolean {
    return this.reader.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }

  // --- handshake -----------------------------------------------------------------------------

  async readGreeting(): Promise<number> {
    const greeting = await this.read(18);
    assert.equal(greeting.readUInt32BE(0), P.NBD_MAGIC_HIGH);
    assert.equal(greeting.readUInt32BE(4), P.NBD_MAGIC_LOW);
    assert.equal(greeting.readUInt32BE(8), P.NBD_OPTS_MAGIC_HIGH);
    assert.equal(greeting.readUInt32BE(12), P.NBD_OPTS_MAGIC_LOW);
    return greeting.readUInt16BE(16);
  }

  sendClientFlags(flags: number): void {
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(flags >>> 0, 0);
    this.send(bytes);
  }

  sendOption(option: number, data: Uint8Array = new Uint8Array(0)): void {
    this.send(P.encodeOption(option, data));
  }

  async readOptionReply(): Promise<OptionReply> {
    const head = await this.read(P.NBD_OPTION_REPLY_HEADER_BYTES);
    assert.equal(head.readUInt32BE(0), P.NBD_REP_MAGIC_HIGH, 'option reply magic');
    assert.equal(head.readUInt32BE(4), P.NBD_REP_MAGIC_LOW, 'option reply magic');
    const length = head.readUInt32BE(16);
    const data = length > 0 ? await this.read(length) : Buffer.alloc(0);
    return { option: head.readUInt32BE(8), type: head.readUInt32BE(12), data };
  }

  /** Replies up to and including the final one (ACK or an error). */
  async readOptionReplies(): Promise<OptionReply[]> {
    const replies: OptionReply[] = [];
    for (;;) {
      const reply = await this.readOptionReply();
      replies.push(reply);
      if (reply.type === P.NBD_REP_ACK || (reply.type & P.NBD_REP_FLAG_ERROR) !== 0) return replies;
    }
  }

  async option(option: number, data?: Uint8Array): Promise<OptionReply[]> {
    this.sendOption(option, data);
    return this.readOptionReplies();
  }

  async handshake(options: HandshakeOptions = {}): Promise<HandshakeResult> {
    const handshakeFlags = await this.readGreeting();
    assert.equal(handshakeFlags, P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES);
    this.sendClientFlags(options.clientFlags ?? P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES);
    const exportName = options.exportName ?? '';
    const contexts = new Map<string, number>();
    if (options.structured === true) {
      const [ack] = await this.option(P.NBD_OPT_STRUCTURED_REPLY);
      assert.equal(ack?.type, P.NBD_REP_ACK);
      this.structured = true;
      if (options.metaContexts !== undefined) {
        const replies = await this.option(P.NBD_OPT_SET_META_CONTEXT, P.encodeMetaContextRequestData(exportName, options.metaContexts));
        assert.equal(replies[replies.length - 1]?.type, P.NBD_REP_ACK);
        for (const reply of replies.slice(0, -1)) {
          assert.equal(reply.type, P.NBD_REP_META_CONTEXT);
          contexts.set(reply.data.subarray(4).toString('utf8'), reply.data.readUInt32BE(0));
        }
      }
    }
    if (options.exportNameOption === true) {
      this.sendOption(P.NBD_OPT_EXPORT_NAME, Buffer.from(exportName, 'utf8'));
      const reply = await this.read(10);
      this.sizeBytes = Number(reply.readBigUInt64BE(0));
      this.transmissionFlags = reply.readUInt16BE(8);
      return { sizeBytes: this.sizeBytes, transmissionFlags: this.transmissionFlags, blockSize: null, contexts, infos: [] };
    }
    const replies = await this.option(P.NBD_OPT_GO, P.encodeInfoRequestData(exportName, [P.NBD_INFO_BLOCK_SIZE]));
    const last = replies[replies.length - 1];
    if (last?.type !== P.NBD_REP_ACK) throw new Error(`NBD_OPT_GO failed: reply type 0x${last?.type.toString(16)} ${last?.data.toString()}`);
    let blockSize: HandshakeResult['blockSize'] = null;
    const infos: Buffer[] = [];
    for (const reply of replies.slice(0, -1)) {
      assert.equal(reply.type, P.NBD_REP_INFO);
      infos.push(reply.data);
      const infoType = reply.data.readUInt16BE(0);
      if (infoType === P.NBD_INFO_EXPORT) {
        this.sizeBytes = Number(reply.data.readBigUInt64BE(2));
        this.transmissionFlags = reply.data.readUInt16BE(10);
      } else if (infoType === P.NBD_INFO_BLOCK_SIZE) {
        blockSize = { minimum: reply.data.readUInt32BE(2), preferred: reply.data.readUInt32BE(6), maximum: reply.data.readUInt32BE(10) };
      }
    }
    return { sizeBytes: this.sizeBytes, transmissionFlags: this.transmissionFlags, blockSize, contexts, infos };
  }

  // --- transmission --------------------------------------------------------------------------

  /** Sends one request and resolves with its reply (replies may arrive in any order). */
  request(type: number, flags: number, offset: number | bigint, length: number, payload?: Uint8Array, cookie?: bigint): Promise<Reply> {
    const id = cookie ?? this.nextCookie++;
    const promise = new Promise<Reply>((resolve, reject) => {
      this.pending.set(id, { cookie: id, type, offset: Number(offset), length, chunks: [], resolve, reject });
    });
    this.send(P.encodeRequest(type, flags, id, offset, length, payload));
    this.startReadLoop();
    return promise;
  }

  /** Sends raw bytes that a request-shaped reply will answer (for malformed-request tests). */
  expectReply(cookie: bigint, type: number, length: number): Promise<Reply> {
    const promise = new Promise<Reply>((resolve, reject) => {
      this.pending.set(cookie, { cookie, type, offset: 0, length, chunks: [], resolve, reject });
    });
    this.startReadLoop();
    return promise;
  }

  async readData(offset: number, length: number, flags = 0): Promise<Buffer> {
    const reply = await this.request(P.NBD_CMD_READ, flags, offset, length);
    if (reply.error !== 0) throw new Error(`read failed with error ${reply.error} ${reply.messages.join(' ')}`);
    return reply.data as Buffer;
  }

  async writeData(offset: number, data: Uint8Array, flags = 0): Promise<number> {
    return (await this.request(P.NBD_CMD_WRITE, flags, offset, data.length, data)).error;
  }

  async flush(): Promise<number> {
    return (await this.request(P.NBD_CMD_FLUSH, 0, 0, 0)).error;
  }

  /** NBD_CMD_DISC, then waits for the server to close. */
  async disconnect(): Promise<void> {
    this.send(P.encodeRequest(P.NBD_CMD_DISC, 0, this.nextCookie++, 0, 0));
    await this.closed();
  }

  private startReadLoop(): void {
    if (this.readLoopRunning) return;
    this.readLoopRunning = true;
    void this.readLoop();
  }

  private async readLoop(): Promise<void> {
    try {
      while (this.pending.size > 0) {
        const magicBytes = await this.read(4);
        const magic = magicBytes.readUInt32BE(0);
        if (magic === P.NBD_SIMPLE_REPLY_MAGIC) {
          const rest = await this.read(12);
          const error = rest.readUInt32BE(0);
          const cookie = rest.readBigUInt64BE(4);
          const pending = this.take(cookie);
          let data: Buffer | null = null;
          if (pending.type === P.NBD_CMD_READ && error === 0 && !this.structured) data = await this.read(pending.length);
          pending.resolve({ cookie, error, data, structured: false, chunks: [], messages: [] });
        } else if (magic === P.NBD_STRUCTURED_REPLY_MAGIC) {
          const rest = await this.read(16);
          const flags = rest.readUInt16BE(0);
          const type = rest.readUInt16BE(2);
          const cookie = rest.readBigUInt64BE(4);
          const length = rest.readUInt32BE(12);
          const payload = length > 0 ? await this.read(length) : Buffer.alloc(0);
          const pending = this.pending.get(cookie);
          if (pending === undefined) throw new Error(`structured chunk for unknown cookie ${cookie}`);
          pending.chunks.push({ flags, type, payload });
          if ((flags & P.NBD_REPLY_FLAG_DONE) !== 0) {
            this.pending.delete(cookie);
            pending.resolve(assembleStructured(pending));
          }
        } else {
          throw new Error(`bad reply magic 0x${magic.toString(16)}`);
        }
      }
    } catch (error) {
      this.readLoopError = error as Error;
      for (const pending of this.pending.values()) pending.reject(error as Error);
      this.pending.clear();
    } finally {
      this.readLoopRunning = false;
      if (this.pending.size > 0 && this.readLoopError === null) this.startReadLoop();
    }
  }

  private take(cookie: bigint): Pending {
    const pending = this.pending.get(cookie);
    if (pending === undefined) throw new Error(`reply for unknown cookie ${cookie}`);
    this.pending.delete(cookie);
    return pending;
  }
}

/** Checks a structured reply's chunks against the spec and reassembles READ data. */
function assembleStructured(pending: Pending): Reply {
  let error = 0;
  const messages: string[] = [];
  let data: Buffer | null = null;
  if (pending.type === P.NBD_CMD_READ) data = Buffer.alloc(pending.length, 0xfe);
  const covered: [number, number][] = [];
  for (const chunk of pending.chunks) {
    if ((chunk.type & 0x8000) !== 0) {
      const chunkError = chunk.payload.readUInt32BE(0);
      assert.notEqual(chunkError, 0, 'error chunk with error 0');
      const messageLength = chunk.payload.readUInt16BE(4);
      assert.ok(messageLength <= chunk.payload.length - 6, 'error message runs past the chunk');
      messages.push(chunk.payload.subarray(6, 6 + messageLength).toString('utf8'));
      if (error === 0) error = chunkError;
      continue;
    }
    if (chunk.type === P.NBD_REPLY_TYPE_OFFSET_DATA || chunk.type === P.NBD_REPLY_TYPE_OFFSET_HOLE) {
      assert.equal(pending.type, P.NBD_CMD_READ, 'content chunk for a non-READ');
      const offset = Number(chunk.payload.readBigUInt64BE(0));
      const length = chunk.type === P.NBD_REPLY_TYPE_OFFSET_DATA ? chunk.payload.length - 8 : chunk.payload.readUInt32BE(8);
      if (chunk.type === P.NBD_REPLY_TYPE_OFFSET_HOLE) assert.equal(chunk.payload.length, 12);
      assert.ok(length > 0, 'empty content chunk');
      assert.ok(offset >= pending.offset && offset + length <= pending.offset + pending.length, 'content chunk outside the request');
      for (const [start, end] of covered) assert.ok(offset >= end || offset + length <= start, 'overlapping content chunks');
      covered.push([offset, offset + length]);
      const target = data as Buffer;
      if (chunk.type === P.NBD_REPLY_TYPE_OFFSET_DATA) chunk.payload.copy(target, offset - pending.offset, 8);
      else target.fill(0, offset - pending.offset, offset - pending.offset + length);
    } else if (chunk.type === P.NBD_REPLY_TYPE_BLOCK_STATUS) {
      assert.equal(pending.type, P.NBD_CMD_BLOCK_STATUS);
      assert.equal((chunk.payload.length - 4) % 8, 0);
      assert.ok(chunk.payload.length >= 12);
    } else if (chunk.type === P.NBD_REPLY_TYPE_NONE) {
      assert.equal(chunk.payload.length, 0);
    } else {
      throw new Error(`unexpected chunk type ${chunk.type}`);
    }
  }
  if (pending.type === P.NBD_CMD_READ && error === 0) {
    const total = covered.reduce((sum, [start, end]) => sum + end - start, 0);
    assert.equal(total, pending.length, 'READ reply does not cover the request');
  }
  return { cookie: pending.cookie, error, data: error === 0 ? data : null, structured: true, chunks: pending.chunks, messages };
}

/** Block status descriptors of one context from a BLOCK_STATUS reply. */
export function blockStatusOf(reply: Reply, contextId: number): { byteLength: number; flags: number }[] {
  for (const chunk of reply.chunks) {
    if (chunk.type !== P.NBD_REPLY_TYPE_BLOCK_STATUS || chunk.payload.readUInt32BE(0) !== contextId) continue;
    const descriptors: { byteLength: number; flags: number }[] = [];
    for (let at = 4; at < chunk.payload.length; at += 8) {
      descriptors.push({ byteLength: chunk.payload.readUInt32BE(at), flags: chunk.payload.readUInt32BE(at + 4) });
    }
    return descriptors;
  }
  throw new Error(`no block status chunk for context ${contextId}`);
}
