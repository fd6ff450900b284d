// Replication link benchmarks: a Link (length-prefixed CRC32C frames, acknowledgements,
// heartbeats, request/response) against raw TCP on the same loopback, measured in the same run
// and reported as ratios.
//
// Setup: the receiving side runs in a child process (link-peer.js), so sender and receiver each
// have their own event loop and, on a 2-core machine, a core each; two Controllers in one
// process would share one loop. The child holds both receivers: a Controller with a replication
// listener (the parent is a Controller that dials it) and, for the baseline, plain net.Servers;
// so link and raw are received by the same process on the same CPU. The connections live for
// the whole run, kept open.
//
// Measured in interleaved rounds (the order baseline/link alternates from round to round, so
// drift on a shared machine hits both alike), after one short warm-up round:
//   stream1MiB   1 MiB messages one way for --seconds, the same payload bytes for both; the
//                link sender respects back-pressure (ERR_LINK_FULL -> wait for 'drain'), the
//                raw sender net.Socket's as a user of a socket would: one write() per message,
//                on false wait for 'drain'. The raw receiver reads every byte ('data' events).
//                Done when the receiver reports it has every message (raw: every byte), over
//                IPC.
//   stream64KiB  the same with 64 KiB messages (raw: 64 KiB socket writes).
//   stream4KiB   the same with 4 KiB messages (raw: 4 KiB socket writes).
//   roundTrip    --round-trips sequential link.request() with a 64-byte payload (echoed by the
//                peer's handler) against a raw ping-pong of a 64-byte message with a u32 length
//                prefix; latency of every round trip, p50 and p99.
//   roundTripSameCpu  the same with both receivers moved to the sender's CPU for the
//                measurement (needs --pin split or same): no cross-CPU wake-up, which on a VM
//                costs ~40 us per hop and hides the software cost of a round trip.
// Each figure and each ratio (link / raw, paired within a round) is reported as median and
// min..max over the rounds.
//
// Options: --rounds N (5), --seconds S per streaming measurement (2), --round-trips N (20000),
// --only NAME,... (all), --pin split|same|none (split: this process on CPU 0, the receivers on
// CPU 1, with taskset; the default when there are 2+ CPUs and taskset is there).
import { execFileSync, fork, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';

import { Controller } from '../src/controller/controller';
import type { Link } from '../src/transport/link';
import { MessageType } from '../src/transport/message-types';
import { writeResults } from './results';

const EXPECTATION = [
  'Expectation, written before measuring (2-core VM, loopback TCP, sender and receiver one core each):',
  '- one loopback TCP stream of large writes: ~2-5 GiB/s (two copies through the kernel, read in 64 KiB chunks).',
  '- a link frame pays CRC32C on both sides (SSE4.2 crc32 instruction: ~10+ GiB/s, so ~0.1 ms per',
  '  1 MiB each side); the receiver reads a large payload straight into its frame buffer (no copy,',
  '  and fewer, larger reads than a \'data\' consumer), so it costs about what raw TCP\'s receiver',
  '  does, and the sender, raw TCP\'s ~0.3-0.4 ms per MiB plus the CRC, is the bottleneck: link',
  '  1 MiB streaming at ~0.8-0.95 of raw (target >= 0.8).',
  '- 64 KiB messages: the same, plus per-message costs (~5-10 us each side) of ~10-20% of the',
  '  ~30-60 us a 64 KiB write costs in TCP: ~0.7-0.9 of raw.',
  '- 4 KiB messages: per-message JS cost (encode, two N-API crc calls, bookkeeping, event emit,',
  '  ~2-5 us per message on each side) dominates the receiver; the sender batches a tick\'s frames',
  '  into one writev where raw pays a write(2) per 4 KiB: ~0.6-1.2 of raw.',
  '- a loopback round trip between two processes: ~20-50 us raw; a link request adds encode/decode,',
  '  CRC of 64 bytes, a promise, a timer and the handler\'s microtask on each side: ~1.2-2x the raw',
  '  latency (round trips/s ratio ~0.5-0.8).',
].join('\n');

const MiB = 1024 * 1024;
const ROUND_TRIP_PAYLOAD_BYTES = 64;

const MEASUREMENTS = ['stream1MiB', 'stream64KiB', 'stream4KiB', 'roundTrip', 'roundTripSameCpu'] as const;
type MeasurementName = (typeof MEASUREMENTS)[number];

interface Options {
  rounds: number;
  seconds: number;
  roundTrips: number;
  /** Measurements to run (for profiling one of them). @default all */
  only: MeasurementName[];
  /**
   * CPU placement: 'split' puts this process on CPU 0 and both receivers on CPU 1 (a core each,
   * and the same wake-up path for every round trip), 'same' puts all on CPU 0, 'none' leaves it
   * to the scheduler. @default 'split' when there are 2+ CPUs and taskset(1), else 'none'
   */
  pin: 'split' | 'same' | 'none';
}

function hasTaskset(): boolean {
  return spawnSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' }).status === 0;
}

function parseOptions(argv: string[]): Options {
  const options: Options = {
    rounds: 5, seconds: 2, roundTrips: 20_000, only: [...MEASUREMENTS],
    pin: os.cpus().length >= 2 && hasTaskset() ? 'split' : 'none',
  };
  for (let index = 0; index < argv.length; index++) {
    const name = argv[index];
    const value = Number(argv[index + 1]);
    const take = (check: (v: number) => boolean): number => {
      if (!check(value)) throw new Error(`${name} needs a valid number, got ${String(argv[index + 1])}`);
      index++;
      return value;
    };
    switch (name) {
      case '--rounds':
        options.rounds = take((v) => Number.isInteger(v) && v >= 1);
        break;
      case '--seconds':
        options.seconds = take((v) => Number.isFinite(v) && v > 0);
        break;
      case '--round-trips':
        options.roundTrips = take((v) => Number.isInteger(v) && v >= 100);
        break;
      case '--pin': {
        const pin = argv[index + 1];
        if (pin !== 'split' && pin !== 'same' && pin !== 'none') throw new Error(`--pin must be split, same or none, got ${String(pin)}`);
        if (pin !== 'none' && !hasTaskset()) throw new Error('--pin needs taskset(1) (util-linux)');
        options.pin = pin;
        index++;
        break;
      }
      case '--only': {
        const names = String(argv[index + 1] ?? '').split(',');
        for (const entry of names) {
          if (!(MEASUREMENTS as readonly string[]).includes(entry)) throw new Error(`--only: unknown measurement ${entry}; known: ${MEASUREMENTS.join(', ')}`);
        }
        options.only = names as MeasurementName[];
        index++;
        break;
      }
      default:
        throw new Error(`unknown option ${String(name)}; known: --rounds N, --seconds S, --round-trips N, --only ${MEASUREMENTS.join(',')}, --pin split|same|none`);
    }
  }
  return options;
}

// ---- the child processes ---------------------------------------------------------------------

interface PeerReply {
  id: number;
  messages: number;
  bytes: number;
  cpuUserUs: number;
  cpuSystemUs: number;
  minorPageFaults: number;
  contextSwitches: number;
}

class Peer {
  private nextId = 1;
  private readonly waiting = new Map<number, (reply: PeerReply) => void>();
  private constructor(readonly child: ChildProcess, readonly ports: number[]) {
    child.on('message', (message: PeerReply) => {
      const resolve = this.waiting.get(message.id);
      if (resolve === undefined) return;
      this.waiting.delete(message.id);
      resolve(message);
    });
  }

  static async start(cpu: number | undefined): Promise<Peer> {
    // Pinned: run `taskset -c CPU node [execArgv] link-peer.js`; taskset execs node in place,
    // so the IPC channel fork() sets up is node's.
    const pinned = cpu === undefined ? {} : { execPath: 'taskset', execArgv: ['-c', String(cpu), process.execPath, ...process.execArgv] };
    const child = fork(path.join(__dirname, 'link-peer.js'), [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], ...pinned });
    const exited = once(child, 'exit').then(([code, signal]) => {
      throw new Error(`link-peer exited before it was ready (${String(code ?? signal)})`);
    });
    const ready = new Promise<{ ports: number[] }>((resolve) => {
      const onMessage = (message: { ready?: boolean; ports: number[] }): void => {
        if (message.ready !== true) return;
        child.off('message', onMessage);
        resolve(message);
      };
      child.on('message', onMessage);
    });
    const { ports } = await Promise.race([ready, exited]);
    const peer = new Peer(child, ports);
    child.on('exit', (code, signal) => {
      if (peer.exiting) return;
      process.stderr.write(`link-peer exited during the run (${String(code ?? signal)})\n`);
      process.exit(1);
    });
    return peer;
  }

  private exiting = false;

  /** Moves the child (every thread) to one CPU. */
  pin(cpu: number): void {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(this.child.pid)], { stdio: 'ignore' });
  }

  command(cmd: 'reset' | 'expect' | 'exit', fields: { messages?: number; bytes?: number } = {}): Promise<PeerReply> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.child.send({ id, cmd, ...fields });
    });
  }

  async stop(): Promise<void> {
    this.exiting = true;
    const exited = once(this.child, 'exit');
    await Promise.race([this.command('exit'), new Promise((done) => setTimeout(done, 3000))]);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }
}

// ---- measurements ----------------------------------------------------------------------------

interface StreamResult {
  messages: number;
  bytes: number;
  seconds: number;
  messagesPerSecond: number;
  mibPerSecond: number;
  /** CPU of the sending process (this one) and of the receiver, per MiB delivered. */
  senderCpuMsPerMiB: number;
  receiverCpuMsPerMiB: number;
  /** Minor page faults per MiB delivered, in each process (first touch of fresh buffers). */
  senderFaultsPerMiB: number;
  receiverFaultsPerMiB: number;
  /** Times the link sender waited for 'drain' (raw: for the socket's 'drain'). */
  waits: number;
  /** CPUs kept busy by other processes meanwhile (machine busy time minus both ends'), or null. */
  otherCpus: number | null;
}

interface RoundTripResult {
  count: number;
  seconds: number;
  roundTripsPerSecond: number;
  p50Us: number;
  p99Us: number;
  meanUs: number;
  /** CPU time per round trip of this process and of the peer (user + system). */
  senderCpuUsPerRoundTrip: number;
  receiverCpuUsPerRoundTrip: number;
  /** Context switches (voluntary + involuntary) per round trip of each process. */
  senderSwitchesPerRoundTrip: number;
  receiverSwitchesPerRoundTrip: number;
  /** CPUs kept busy by other processes meanwhile, or null (see StreamResult). */
  otherCpus: number | null;
}

function cpuMs(usage: NodeJS.CpuUsage): number {
  return (usage.user + usage.system) / 1000;
}

interface SenderUsage {
  cpu: NodeJS.CpuUsage;
  faults: number;
  switches: number;
  /** Machine-wide CPU seconds busy and elapsed (all CPUs), from /proc/stat; null elsewhere. */
  machine: { busy: number; total: number } | null;
}

function machineSeconds(): { busy: number; total: number } | null {
  try {
    const line = fs.readFileSync('/proc/stat', 'latin1').split('\n', 1)[0] ?? '';
    const ticks = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (ticks[3] ?? 0) + (ticks[4] ?? 0);
    const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
    return { busy: (total - idle) / 100, total: total / 100 }; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

function senderUsage(since?: SenderUsage): SenderUsage {
  const resources = process.resourceUsage();
  const faults = resources.minorPageFault;
  const switches = resources.voluntaryContextSwitches + resources.involuntaryContextSwitches;
  const machine = machineSeconds();
  if (since === undefined) return { cpu: process.cpuUsage(), faults, switches, machine };
  return {
    cpu: process.cpuUsage(since.cpu),
    faults: faults - since.faults,
    switches: switches - since.switches,
    machine: machine === null || since.machine === null
      ? null
      : { busy: machine.busy - since.machine.busy, total: machine.total - since.machine.total },
  };
}

function streamResult(messages: number, bytes: number, startMs: number, sender: SenderUsage, receiver: PeerReply,
  waits: number): StreamResult {
  const seconds = (performance.now() - startMs) / 1000;
  const mib = bytes / MiB;
  return {
    messages,
    bytes,
    seconds,
    messagesPerSecond: messages / seconds,
    mibPerSecond: mib / seconds,
    senderCpuMsPerMiB: cpuMs(sender.cpu) / mib,
    receiverCpuMsPerMiB: (receiver.cpuUserUs + receiver.cpuSystemUs) / 1000 / mib,
    senderFaultsPerMiB: sender.faults / mib,
    receiverFaultsPerMiB: receiver.minorPageFaults / mib,
    waits,
    otherCpus: otherCpus(sender, receiver),
  };
}

/** One payload per message size, made once and sent by both link and raw (the same bytes). */
const payloads = new Map<number, Buffer>();
function payloadOf(messageBytes: number): Buffer {
  let payload = payloads.get(messageBytes);
  if (payload === undefined) {
    payload = Buffer.alloc(messageBytes);
    for (let index = 0; index < messageBytes; index++) payload[index] = (index * 131 + 0x5a) & 0xff;
    payloads.set(messageBytes, payload);
  }
  return payload;
}

async function streamLink(link: Link, peer: Peer, messageBytes: number, seconds: number): Promise<StreamResult> {
  await peer.command('reset');
  const payload = payloadOf(messageBytes);
  const usage = senderUsage();
  const startMs = performance.now();
  const deadline = startMs + seconds * 1000;
  let messages = 0;
  let waits = 0;
  while (performance.now() < deadline) {
    try {
      link.send(MessageType.LINK_TEST, payload);
      messages++;
    } catch (error) {
      if ((error as { code?: string }).code !== 'ERR_LINK_FULL') throw error;
      waits++;
      await once(link, 'drain');
    }
  }
  const reply = await peer.command('expect', { messages, bytes: messages * messageBytes });
  return streamResult(messages, messages * messageBytes, startMs, senderUsage(usage), reply, waits);
}

async function streamRaw(socket: net.Socket, peer: Peer, messageBytes: number, seconds: number): Promise<StreamResult> {
  await peer.command('reset');
  const payload = payloadOf(messageBytes);
  const usage = senderUsage();
  const startMs = performance.now();
  const deadline = startMs + seconds * 1000;
  let messages = 0;
  let waits = 0;
  while (performance.now() < deadline) {
    messages++;
    if (!socket.write(payload)) {
      waits++;
      await once(socket, 'drain');
    }
  }
  const reply = await peer.command('expect', { bytes: messages * messageBytes });
  return streamResult(messages, messages * messageBytes, startMs, senderUsage(usage), reply, waits);
}

/** Machine CPU not used by this process or the peer during `measure` (in CPUs), or null. */
function otherCpus(sender: SenderUsage, receiver: PeerReply): number | null {
  if (sender.machine === null || sender.machine.total <= 0) return null;
  const ours = cpuMs(sender.cpu) / 1000 + (receiver.cpuUserUs + receiver.cpuSystemUs) / 1e6;
  return Math.max(0, ((sender.machine.busy - ours) / sender.machine.total) * os.cpus().length);
}

async function withUsage(peer: Peer, measure: () => Promise<RoundTripResult>): Promise<RoundTripResult> {
  await peer.command('reset');
  const usage = senderUsage();
  const result = await measure();
  const sender = senderUsage(usage);
  const receiver = await peer.command('expect', {});
  result.otherCpus = otherCpus(sender, receiver);
  result.senderCpuUsPerRoundTrip = (sender.cpu.user + sender.cpu.system) / result.count;
  result.receiverCpuUsPerRoundTrip = (receiver.cpuUserUs + receiver.cpuSystemUs) / result.count;
  result.senderSwitchesPerRoundTrip = sender.switches / result.count;
  result.receiverSwitchesPerRoundTrip = receiver.contextSwitches / result.count;
  return result;
}

function roundTripResult(latenciesNs: Float64Array, startMs: number): RoundTripResult {
  const seconds = (performance.now() - startMs) / 1000;
  const sorted = Float64Array.from(latenciesNs).sort();
  const at = (q: number): number => (sorted[Math.floor(q * (sorted.length - 1))] ?? 0) / 1000;
  let sum = 0;
  for (const value of sorted) sum += value;
  return {
    count: sorted.length,
    seconds,
    roundTripsPerSecond: sorted.length / seconds,
    p50Us: at(0.5),
    p99Us: at(0.99),
    meanUs: sum / sorted.length / 1000,
    senderCpuUsPerRoundTrip: 0,
    receiverCpuUsPerRoundTrip: 0,
    senderSwitchesPerRoundTrip: 0,
    receiverSwitchesPerRoundTrip: 0,
    otherCpus: null,
  };
}

async function roundTripLink(link: Link, count: number): Promise<RoundTripResult> {
  const payload = Buffer.alloc(ROUND_TRIP_PAYLOAD_BYTES, 0xa5);
  const latencies = new Float64Array(count);
  const startMs = performance.now();
  for (let index = 0; index < count; index++) {
    const t0 = process.hrtime.bigint();
    const response = await link.request(MessageType.LINK_TEST_REQUEST, payload);
    latencies[index] = Number(process.hrtime.bigint() - t0);
    if (response.length !== ROUND_TRIP_PAYLOAD_BYTES) throw new Error(`link echo returned ${response.length} bytes`);
  }
  return roundTripResult(latencies, startMs);
}

/** A ping-pong client over a socket to the raw child's echo server: u32 length, then payload. */
class RawPingPong {
  private received = 0;
  private expected = 0;
  private resolve: (() => void) | undefined;
  private readonly message: Buffer;

  constructor(readonly socket: net.Socket) {
    this.message = Buffer.alloc(4 + ROUND_TRIP_PAYLOAD_BYTES, 0xa5);
    this.message.writeUInt32BE(ROUND_TRIP_PAYLOAD_BYTES, 0);
    socket.on('data', (chunk: Buffer) => {
      this.received += chunk.length;
      if (this.resolve !== undefined && this.received >= this.expected) {
        const resolve = this.resolve;
        this.resolve = undefined;
        resolve();
      }
    });
  }

  once(): Promise<void> {
    this.expected += this.message.length;
    return new Promise((resolve) => {
      this.resolve = resolve;
      this.socket.write(this.message);
    });
  }
}

async function roundTripRaw(pingPong: RawPingPong, count: number): Promise<RoundTripResult> {
  const latencies = new Float64Array(count);
  const startMs = performance.now();
  for (let index = 0; index < count; index++) {
    const t0 = process.hrtime.bigint();
    await pingPong.once();
    latencies[index] = Number(process.hrtime.bigint() - t0);
  }
  return roundTripResult(latencies, startMs);
}

// ---- summaries -------------------------------------------------------------------------------

interface Spread {
  median: number;
  min: number;
  max: number;
}

function spread(values: number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
  return { median, min: sorted[0] as number, max: sorted[sorted.length - 1] as number };
}

function format(s: Spread, digits = 0): string {
  return `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}..${s.max.toFixed(digits)})`;
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.off('error', reject);
      socket.setNoDelay(true);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

async function waitUp(link: Link, timeoutMs: number): Promise<void> {
  if (link.isUp) return;
  const deadline = performance.now() + timeoutMs;
  while (!link.isUp) {
    if (performance.now() > deadline) throw new Error(`link did not come up within ${timeoutMs} ms: ${JSON.stringify(link.status())}`);
    await new Promise((done) => setTimeout(done, 10));
  }
}

type Variant = 'raw' | 'link';
type StreamName = 'stream1MiB' | 'stream64KiB' | 'stream4KiB';

const STREAM_NAMES: readonly StreamName[] = ['stream1MiB', 'stream64KiB', 'stream4KiB'];
const STREAM_LABELS: Readonly<Record<StreamName, string>> = { stream1MiB: '1 MiB', stream64KiB: '64 KiB', stream4KiB: '4 KiB' };

/** Message size of each stream measurement. */
const STREAM_MESSAGE_BYTES: Readonly<Record<StreamName, number>> = { stream1MiB: MiB, stream64KiB: 64 * 1024, stream4KiB: 4096 };

interface Round {
  round: number;
  order: Variant[];
  stream1MiB?: Record<Variant, StreamResult>;
  stream64KiB?: Record<Variant, StreamResult>;
  stream4KiB?: Record<Variant, StreamResult>;
  roundTrip?: Record<Variant, RoundTripResult>;
  roundTripSameCpu?: Record<Variant, RoundTripResult>;
}

function streamSummary(rounds: Round[], name: StreamName) {
  const results = rounds.map((r) => r[name] as Record<Variant, StreamResult>);
  const side = (variant: Variant) => ({
    mibPerSecond: spread(results.map((r) => r[variant].mibPerSecond)),
    messagesPerSecond: spread(results.map((r) => r[variant].messagesPerSecond)),
    senderCpuMsPerMiB: spread(results.map((r) => r[variant].senderCpuMsPerMiB)),
    receiverCpuMsPerMiB: spread(results.map((r) => r[variant].receiverCpuMsPerMiB)),
    senderFaultsPerMiB: spread(results.map((r) => r[variant].senderFaultsPerMiB)),
    receiverFaultsPerMiB: spread(results.map((r) => r[variant].receiverFaultsPerMiB)),
    otherCpus: spread(results.map((r) => r[variant].otherCpus ?? 0)),
  });
  // The busier end's CPU per MiB bounds what a stream can reach with a core per end; its ratio
  // (raw / link) is what the throughput ratio tends to when neighbours leave both ends a core,
  // and it drifts far less than MiB/s on a shared machine.
  const bottleneck = (result: StreamResult): number => Math.max(result.senderCpuMsPerMiB, result.receiverCpuMsPerMiB);
  return {
    raw: side('raw'),
    link: side('link'),
    ratio: spread(results.map((r) => r.link.mibPerSecond / r.raw.mibPerSecond)),
    cpuBoundRatio: spread(results.map((r) => bottleneck(r.raw) / bottleneck(r.link))),
  };
}

function roundTripSummary(rounds: Round[], name: 'roundTrip' | 'roundTripSameCpu') {
  const results = rounds.map((r) => r[name] as Record<Variant, RoundTripResult>);
  const side = (variant: Variant) => ({
    roundTripsPerSecond: spread(results.map((r) => r[variant].roundTripsPerSecond)),
    p50Us: spread(results.map((r) => r[variant].p50Us)),
    p99Us: spread(results.map((r) => r[variant].p99Us)),
    senderCpuUsPerRoundTrip: spread(results.map((r) => r[variant].senderCpuUsPerRoundTrip)),
    receiverCpuUsPerRoundTrip: spread(results.map((r) => r[variant].receiverCpuUsPerRoundTrip)),
    senderSwitchesPerRoundTrip: spread(results.map((r) => r[variant].senderSwitchesPerRoundTrip)),
    receiverSwitchesPerRoundTrip: spread(results.map((r) => r[variant].receiverSwitchesPerRoundTrip)),
    otherCpus: spread(results.map((r) => r[variant].otherCpus ?? 0)),
  });
  return {
    raw: side('raw'),
    link: side('link'),
    ratio: spread(results.map((r) => r.link.roundTripsPerSecond / r.raw.roundTripsPerSecond)),
  };
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const loadAtStart = os.loadavg();
  process.stderr.write(`${EXPECTATION}\n`);
  if ((loadAtStart[0] ?? 0) > 0.5) {
    process.stderr.write(`link: note: load average ${loadAtStart.map((x) => x.toFixed(2)).join(' ')} before starting; ` +
      'another process is using the CPUs and the figures will be noisy\n');
  }
  process.stderr.write(`link: ${options.rounds} rounds of ${options.only.join(', ')}; ` +
    `${options.seconds} s per stream, ${options.roundTrips} round trips; CPUs: ${options.pin === 'split'
    ? 'sender on 0, receivers on 1' : options.pin === 'same' ? 'all on 0' : 'not pinned'}\n`);

  if (options.pin !== 'none') execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
  const peerCpu = options.pin === 'split' ? 1 : options.pin === 'same' ? 0 : undefined;
  // One child receives both: link and raw share its process, CPU, heap and JIT state.
  const peer = await Peer.start(peerCpu);
  const linkPeer = peer;
  const rawPeer = peer;
  const controller = new Controller({
    id: 'sender',
    peers: [{ id: 'receiver', address: { host: '127.0.0.1', port: peer.ports[0] as number } }],
  });
  await controller.start();
  const link = controller.link('receiver');
  await waitUp(link, 10_000);
  const streamSocket = await connect(peer.ports[1] as number);
  const pingPong = new RawPingPong(await connect(peer.ports[2] as number));
  const before = link.status();

  const run = {
    stream: (name: StreamName, variant: Variant, seconds: number): Promise<StreamResult> =>
      variant === 'link'
        ? streamLink(link, linkPeer, STREAM_MESSAGE_BYTES[name], seconds)
        : streamRaw(streamSocket, rawPeer, STREAM_MESSAGE_BYTES[name], seconds),
    roundTrip: (variant: Variant, count: number): Promise<RoundTripResult> =>
      variant === 'link' ? withUsage(linkPeer, () => roundTripLink(link, count)) : withUsage(rawPeer, () => roundTripRaw(pingPong, count)),
  };
  // roundTripSameCpu needs pinning: it moves both receivers to CPU 0 for the measurement.
  const wants = (name: MeasurementName): boolean =>
    options.only.includes(name) && (name !== 'roundTripSameCpu' || options.pin !== 'none');
  const onSameCpu = async <T>(measure: () => Promise<T>): Promise<T> => {
    if (options.pin !== 'split') return measure();
    peer.pin(0);
    try {
      return await measure();
    } finally {
      peer.pin(1);
    }
  };

  // Warm-up (JIT, socket buffers, first allocations): short, not reported.
  process.stderr.write('link: warm-up\n');
  for (const variant of ['raw', 'link'] as Variant[]) {
    for (const name of STREAM_NAMES) if (wants(name)) await run.stream(name, variant, Math.min(0.5, options.seconds));
    if (wants('roundTrip')) await run.roundTrip(variant, Math.min(2000, options.roundTrips));
    if (wants('roundTripSameCpu')) await onSameCpu(() => run.roundTrip(variant, Math.min(2000, options.roundTrips)));
  }

  const rounds: Round[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    const order: Variant[] = round % 2 === 1 ? ['raw', 'link'] : ['link', 'raw'];
    const r: Round = { round, order };
    const both = async <T>(measure: (variant: Variant) => Promise<T>): Promise<Record<Variant, T>> => {
      const result = {} as Record<Variant, T>;
      for (const variant of order) result[variant] = await measure(variant);
      return result;
    };
    const line: string[] = [];
    for (const name of STREAM_NAMES) {
      if (!wants(name)) continue;
      const x = (r[name] = await both((variant) => run.stream(name, variant, options.seconds)));
      line.push(`${STREAM_LABELS[name]} ${x.link.mibPerSecond.toFixed(0)} / ${x.raw.mibPerSecond.toFixed(0)} MiB/s ` +
        `(${(x.link.mibPerSecond / x.raw.mibPerSecond).toFixed(2)})`);
    }
    if (wants('roundTrip')) {
      const x = (r.roundTrip = await both((variant) => run.roundTrip(variant, options.roundTrips)));
      line.push(`round trip p50 ${x.link.p50Us.toFixed(1)} / ${x.raw.p50Us.toFixed(1)} us`);
    }
    if (wants('roundTripSameCpu')) {
      const x = (r.roundTripSameCpu = await onSameCpu(() => both((variant) => run.roundTrip(variant, options.roundTrips))));
      line.push(`same CPU ${x.link.p50Us.toFixed(1)} / ${x.raw.p50Us.toFixed(1)} us`);
    }
    rounds.push(r);
    process.stderr.write(`  round ${round} (${order.join(' then ')}): ${line.join(', ')} (link / raw)\n`);
  }
  const after = link.status();

  const summary: {
    stream1MiB?: ReturnType<typeof streamSummary>;
    stream64KiB?: ReturnType<typeof streamSummary>;
    stream4KiB?: ReturnType<typeof streamSummary>;
    roundTrip?: ReturnType<typeof roundTripSummary>;
    roundTripSameCpu?: ReturnType<typeof roundTripSummary>;
  } = {};
  const ratios: Record<string, number> = {};
  process.stderr.write('link: median (min..max) over rounds\n');
  for (const name of STREAM_NAMES) {
    if (!wants(name)) continue;
    const x = (summary[name] = streamSummary(rounds, name));
    ratios[`${name}VsRawTcp`] = x.ratio.median;
    process.stderr.write(
      `  ${name}: link ${format(x.link.mibPerSecond)} MiB/s = ${format(x.link.messagesPerSecond)} msg/s; ` +
        `raw ${format(x.raw.mibPerSecond)} MiB/s; ratio ${format(x.ratio, 3)}; ` +
        `by the busier end's CPU per MiB ${format(x.cpuBoundRatio, 3)}\n` +
        `    CPU ms per MiB: sender link ${format(x.link.senderCpuMsPerMiB, 3)}, raw ${format(x.raw.senderCpuMsPerMiB, 3)}; ` +
        `receiver link ${format(x.link.receiverCpuMsPerMiB, 3)}, raw ${format(x.raw.receiverCpuMsPerMiB, 3)}\n` +
        `    page faults per MiB: receiver link ${format(x.link.receiverFaultsPerMiB, 1)}, raw ${format(x.raw.receiverFaultsPerMiB, 1)}; ` +
        `CPUs busy with other processes meanwhile: ${format(x.link.otherCpus, 2)} / ${format(x.raw.otherCpus, 2)}\n`,
    );
  }
  for (const name of ['roundTrip', 'roundTripSameCpu'] as const) {
    if (!wants(name)) continue;
    const x = (summary[name] = roundTripSummary(rounds, name));
    ratios[`${name}VsRawPingPong`] = x.ratio.median;
    process.stderr.write(
      `  ${name}: link ${format(x.link.roundTripsPerSecond)} /s, p50 ${format(x.link.p50Us, 1)} us, ` +
        `p99 ${format(x.link.p99Us, 1)} us; raw ${format(x.raw.roundTripsPerSecond)} /s, ` +
        `p50 ${format(x.raw.p50Us, 1)} us, p99 ${format(x.raw.p99Us, 1)} us; ratio ${format(x.ratio, 3)}\n` +
        `    CPU us per round trip: sender link ${format(x.link.senderCpuUsPerRoundTrip, 1)}, raw ${format(x.raw.senderCpuUsPerRoundTrip, 1)}; ` +
        `receiver link ${format(x.link.receiverCpuUsPerRoundTrip, 1)}, raw ${format(x.raw.receiverCpuUsPerRoundTrip, 1)}\n` +
        `    context switches per round trip: sender link ${format(x.link.senderSwitchesPerRoundTrip, 2)}, raw ${format(x.raw.senderSwitchesPerRoundTrip, 2)}; ` +
        `receiver link ${format(x.link.receiverSwitchesPerRoundTrip, 2)}, raw ${format(x.raw.receiverSwitchesPerRoundTrip, 2)}; ` +
        `CPUs busy with other processes meanwhile: ${format(x.link.otherCpus, 2)} / ${format(x.raw.otherCpus, 2)}\n`,
    );
  }
  const targets: Record<string, number> = wants('stream1MiB') ? { stream1MiBVsRawTcp: 0.8 } : {};

  streamSocket.destroy();
  pingPong.socket.destroy();
  await controller.close();
  await peer.stop();

  const result = {
    suite: 'link',
    date: new Date().toISOString(),
    machine: `${os.cpus()[0]?.model ?? 'unknown'} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
    node: process.version,
    loadAverage: { atStart: loadAtStart, atEnd: os.loadavg() },
    options,
    expectation: EXPECTATION,
    summary,
    rounds,
    linkStatus: {
      reconnects: after.reconnects - before.reconnects,
      unconfirmedReported: after.unconfirmedReported - before.unconfirmedReported,
      messagesSent: after.messagesSent - before.messagesSent,
      bytesOut: after.bytesOut - before.bytesOut,
    },
    ratios,
    targets,
  };
  if (result.linkStatus.reconnects !== 0) process.stderr.write(`link: WARNING: the link reconnected ${result.linkStatus.reconnects} time(s) during the run\n`);
  writeResults('link', result);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${String((error as Error).stack ?? error)}\n`);
  process.exit(1);
});
